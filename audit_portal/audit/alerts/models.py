"""Detection rules, the alerts they open, and the notifications waiting to go out (an outbox, so that a receiver
that is down gets each notification once it is back, under the same delivery id)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ...extensions import db
from ...timeutil import UTCDateTime, utcnow
from ..record.enums import ChoiceEnum

#: The viewer's path (the audit blueprint's prefix): an alert links to its events there.
VIEWER_PATH = "/admin/audit-logs/"
NAME_MAX = 64
GROUP_MAX = 255
ERROR_MAX = 500


class AlertState(ChoiceEnum):
    OPEN = "open"  #: firing, nobody has looked yet
    ACKNOWLEDGED = "acknowledged"  #: someone is on it: still collects events, no more notifications
    RESOLVED = "resolved"  #: by hand, or after ALERT_RESOLVE_MINUTES without a new event


class AlertSeverity(ChoiceEnum):
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class GroupBy(ChoiceEnum):
    """What a rule counts per: one alert per value (``None``: one alert for everything the rule matches)."""

    IP_ADDRESS = "ip_address"
    USER_ID = "user_id"
    USERNAME = "username"  #: the actor's name, or a failed login's attempted name
    ACTION_TYPE = "action_type"
    FINGERPRINT = "fingerprint"


class NotificationEvent(ChoiceEnum):
    OPENED = "opened"
    RENOTIFY = "renotify"
    RESOLVED = "resolved"


class Channel(ChoiceEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class AlertRule(db.Model):
    """What to count, per what, over which window, and from which count on to alert."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    #: Built-in rules come with the app: they can be changed and disabled, not deleted.
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The list API's filter parameters (custom rules; a built-in rule's own matching is in ``rules.py``).
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    group_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    threshold: Mapped[int] = mapped_column(Integer)
    window_seconds: Mapped[int] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(16), default=AlertSeverity.WARNING.value)
    #: A built-in rule's own parameter, where it has one (error_regression: days of silence).
    parameter: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Alert(db.Model):
    """One rule firing for one group: while it is open or acknowledged, more events grow its count and last seen
    instead of opening another (a partial unique index holds that across evaluators)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("uq_alerts_live_group", "rule_id", "group_key", unique=True,
              sqlite_where=text("state != 'resolved'"), postgresql_where=text("state != 'resolved'")),
        Index("ix_alerts_state_last_seen", "state", "last_seen"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    rule: Mapped[AlertRule] = relationship(lazy="joined")
    #: The group's value ('' when the rule does not group: NULLs would not meet in the unique index).
    group_key: Mapped[str] = mapped_column(String(GROUP_MAX), default="")
    state: Mapped[str] = mapped_column(String(16), default=AlertState.OPEN.value)
    severity: Mapped[str] = mapped_column(String(16))
    #: Matching events from ``window_start`` on (distinct usernames, for password spraying).
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The filters that select exactly its events (for ``events_url``).
    event_filters: Mapped[dict] = mapped_column(JSON, default=dict)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    notified_count: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(NAME_MAX), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def group(self) -> str | None:
        return self.group_key or None

    @property
    def events_url(self) -> str:
        """The viewer filtered to exactly its events."""
        return f"{VIEWER_PATH}?{urlencode(self.event_filters or {})}"


class AlertNotification(db.Model):
    """A notification to send, sent, or given up on; retried with backoff under one ``delivery_id``."""

    __tablename__ = "alert_notifications"
    __table_args__ = (Index("ix_alert_notifications_pending", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)
    #: What goes out, fixed when the notification is made (a retry sends the same words).
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[dict] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
