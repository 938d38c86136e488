"""A stream destination, and where its delivery stands."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ...extensions import db
from ...timeutil import UTCDateTime, utcnow
from ..record.enums import ChoiceEnum
from ..record.models import IdType

NAME_MAX = 64
URL_MAX = 2048
PATH_MAX = 1024
ERROR_MAX = 500


class StreamKind(ChoiceEnum):
    SYSLOG = "syslog"  #: RFC 5424 over TCP (octet counting, RFC 6587), optionally TLS (RFC 5425)
    WEBHOOK = "webhook"  #: signed NDJSON batches over HTTPS (plain HTTP only to loopback)
    FILE = "file"  #: NDJSON lines appended to a file under AUDIT_STREAM_FILE_DIR, rotated by size


class StreamFormat(ChoiceEnum):
    JSON = "json"  #: the API's item
    ECS = "ecs"  #: Elastic Common Schema
    CEF = "cef"  #: ArcSight Common Event Format


class StreamState(ChoiceEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    FAILING = "failing"  #: the last attempt failed; the dispatcher retries with backoff


class StreamDestination(db.Model):
    """Where the trail goes, in which format, which events, and how far delivery has come."""

    __tablename__ = "audit_streams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(URL_MAX), nullable=True)
    path: Mapped[str | None] = mapped_column(String(PATH_MAX), nullable=True)
    format: Mapped[str] = mapped_column(String(8))
    #: The list API's filter parameters, as given (validated by its schema).
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Extra HTTP headers of a webhook, name -> value. Values may hold tokens: the API shows names only.
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    #: A webhook's HMAC key (shown once, at creation and after a rotation).
    secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: A syslog-over-TLS destination's CA bundle (default: the system's).
    ca_file: Mapped[str | None] = mapped_column(String(PATH_MAX), nullable=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The last chain link (``audit_chain.seq``) delivered: delivery follows the chain, so it skips nothing.
    cursor_seq: Mapped[int] = mapped_column(IdType, default=0)
    #: Syslog has no acknowledgement: after a connection error delivery starts again from here, which lags the
    #: cursor by at least the last batch and STREAM_RESEND_SECONDS.
    resend_seq: Mapped[int] = mapped_column(IdType, default=0)
    #: The batch being delivered: a webhook retry sends the same links under the same delivery id.
    pending_delivery_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pending_upto_seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), nullable=True)
    #: Failed attempts in a row (0: healthy); the backoff grows with it.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_delivery_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def state(self) -> str:
        if self.paused:
            return StreamState.PAUSED.value
        return StreamState.FAILING.value if self.failures else StreamState.ACTIVE.value

    @property
    def target(self) -> str:
        """Where it sends: the URL, or the file path."""
        return self.url or self.path or ""
