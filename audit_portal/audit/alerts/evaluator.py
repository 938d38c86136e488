"""One evaluation of the rules: open an alert per rule and group that reaches its threshold, grow the live ones,
renotify those that keep growing, resolve the quiet ones, then send what is due. The runner calls it every
ALERT_EVAL_INTERVAL seconds while it holds the evaluator lock; it never runs inside a request."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...timeutil import utcnow
from ..record.enums import ActionType, ResourceType
from ..write.service import log_audit
from ..write.spool import Spool
from . import notify
from .models import Alert, AlertRule, AlertState, NotificationEvent
from .rules import Hit, event_filters, hits, minimum, recount
from .service import AlertError, ensure_builtin_rules, resolve

log = logging.getLogger(__name__)
_LIVE = (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value)
#: The group of the audit_write_failure alert raised by a spool that holds events.
SPOOL_GROUP = "spool"


@dataclass
class Evaluation:
    opened: list[Alert] = field(default_factory=list)
    resolved: int = 0
    sent: int = 0


def evaluate(now: datetime | None = None) -> Evaluation:
    """Run every enabled rule once, commit, then send the notifications that are due."""
    now = now or utcnow()
    result = Evaluation()
    ensure_builtin_rules()
    config = current_app.config
    renotify_after = timedelta(minutes=config["ALERT_RENOTIFY_MINUTES"])
    for rule in db.session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)):
        try:
            with db.session.begin_nested():  # one rule's failure (a bug, a bad stored filter) spares the others
                result.opened += _evaluate_rule(rule, now, renotify_after)
        except Exception:  # noqa: BLE001 - logged; the other rules go on
            log.exception("alert rule %s could not be evaluated", rule.name)
    result.resolved = _resolve_quiet(now - timedelta(minutes=config["ALERT_RESOLVE_MINUTES"]), now)
    db.session.commit()
    result.sent = notify.send_due(now)
    return result


def _evaluate_rule(rule: AlertRule, now: datetime, renotify_after: timedelta) -> list[Alert]:
    live = {a.group_key: a for a in db.session.scalars(
        select(Alert).where(Alert.rule_id == rule.id, Alert.state.in_(_LIVE)))}
    found = hits(db.session, rule, now)
    if rule.builtin and rule.name == "audit_write_failure":
        found += _spool_hit(now)
    #: The last event each group's latest resolved alert saw: a new alert counts only what came after it.
    resolved_upto = dict(db.session.execute(
        select(Alert.group_key, func.max(Alert.last_seen))
        .where(Alert.rule_id == rule.id, Alert.state == AlertState.RESOLVED.value).group_by(Alert.group_key)).all())
    opened = []
    for hit in found:
        key = hit.group_key[:255]
        if key in live:
            continue
        hit = _after(rule, hit, resolved_upto.get(key), now)
        if hit is not None:
            alert = _open(rule, hit, now)
            if alert is not None:
                live[alert.group_key] = alert
                opened.append(alert)
    for alert in live.values():
        _grow(rule, alert, now, renotify_after)
    return opened


def _after(rule: AlertRule, hit: Hit, resolved_upto: datetime | None, now: datetime) -> Hit | None:
    """``hit`` counting only the events after the last one a resolved alert of its group saw (None when those
    do not reach the threshold): resolving an alert, by hand or after a quiet period, is never undone by the
    events it already covered."""
    if resolved_upto is None or resolved_upto < hit.first_seen or hit.group_key == SPOOL_GROUP:
        return hit
    if hit.last_seen <= resolved_upto:
        return None
    since = resolved_upto + timedelta(microseconds=1)
    count, first, last = recount(db.session, rule, hit.group_key, since)
    if count < minimum(rule) or first is None:
        return None
    return Hit(hit.group_key, count, first, last, since)


def _spool_hit(now: datetime) -> list[Hit]:
    """Events waiting in this host's spool (the database refused them): an audit write failure too."""
    spool = Spool(current_app.config["AUDIT_DATA_DIR"], current_app.config["AUDIT_SPOOL_MAX_BYTES"])
    return [Hit(SPOOL_GROUP, 1, now, now)] if spool.pending_bytes() > 0 else []


def _open(rule: AlertRule, hit: Hit, now: datetime) -> Alert | None:
    window_start = hit.since or now - timedelta(seconds=rule.window_seconds)
    alert = Alert(rule=rule, group_key=hit.group_key[:255], state=AlertState.OPEN.value, severity=rule.severity,
                  count=hit.count, window_start=window_start, first_seen=hit.first_seen, last_seen=hit.last_seen,
                  event_filters=event_filters(rule, hit.group_key, window_start))
    try:
        with db.session.begin_nested():  # another evaluator's alert for the group (the unique index) wins
            db.session.add(alert)
            db.session.flush()
    except IntegrityError:
        log.info("alert %s for %r is open already", rule.name, hit.group_key)
        return None
    group = f" for {alert.group}" if alert.group else ""
    log_audit(None, ActionType.ALERT_TRIGGERED, ResourceType.ALERT, alert.id,
              f"Alert {rule.name}{group}: {hit.count} matching events (threshold {rule.threshold})",
              {"rule": rule.name, "group": alert.group, "count": hit.count, "severity": alert.severity,
               "threshold": rule.threshold, "window_seconds": rule.window_seconds}, transactional=True, via_outbox=False)
    notify.queue(alert, NotificationEvent.OPENED, now)
    return alert


def _grow(rule: AlertRule, alert: Alert, now: datetime, renotify_after: timedelta) -> None:
    """Recount from the alert's window start; renotify an open alert that grew and was last told long ago."""
    if rule.builtin and rule.name == "audit_write_failure" and alert.group_key == SPOOL_GROUP:
        if _spool_hit(now):
            alert.last_seen = now
        return
    count, _, last = recount(db.session, rule, alert.group_key, alert.window_start)
    if count > alert.count:
        alert.count = count
    if last is not None and last > alert.last_seen:
        alert.last_seen = last
    if (alert.state == AlertState.OPEN.value and alert.count > alert.notified_count
            and alert.notified_at is not None and now - alert.notified_at >= renotify_after):
        # Only if it is still open in the database: an admin may have acknowledged it since it was read.
        claimed = db.session.execute(update(Alert).where(Alert.id == alert.id, Alert.state == AlertState.OPEN.value)
                                     .values(notified_at=now, notified_count=alert.count)).rowcount
        if claimed:
            notify.queue(alert, NotificationEvent.RENOTIFY, now)


def _resolve_quiet(quiet_since: datetime, now: datetime) -> int:
    """Resolve the live alerts whose last event, and whose opening, are older than the quiet period (an alert
    opened from old events still stays open for the period)."""
    quiet = list(db.session.scalars(select(Alert).where(Alert.state.in_(_LIVE), Alert.last_seen < quiet_since,
                                                        Alert.created_at < quiet_since)))
    resolved = 0
    for alert in quiet:
        try:
            resolve(None, alert, now, reason="no new event for ALERT_RESOLVE_MINUTES")
        except AlertError:  # an admin resolved or acknowledged it meanwhile: theirs
            continue
        resolved += 1
    return resolved
