"""Alert rules and alerts: create, change and remove rules; acknowledge and resolve alerts. Each change records
its ALERT_* event (category ``security``) in the same transaction; the caller commits."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...timeutil import utcnow
from ..read.schemas import AuditLogFilterSchema
from ..record.enums import ActionType, ResourceType
from ..write.service import log_audit
from . import notify
from .models import Alert, AlertNotification, AlertRule, AlertState, NotificationEvent
from .rules import BUILTINS

_RULE_FIELDS = ("name", "enabled", "filters", "group_by", "threshold", "window_seconds", "severity", "parameter")


log = logging.getLogger(__name__)


class AlertError(ValueError):
    """A rule was broken; ``field`` names the input at fault; ``code`` is 409 when the input is fine but the
    alert's or rule's state refuses it (acknowledging a resolved alert, deleting a built-in rule)."""

    def __init__(self, field: str, message: str, code: int = 422):
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


class NotFound(LookupError):
    pass


def _record(actor, action: ActionType, resource: ResourceType, resource_id, text: str, metadata: dict) -> None:
    log_audit(actor.id if actor else None, action, resource, resource_id, text, metadata,
              username=actor.username if actor else None, transactional=True, via_outbox=False)


# -- rules --------------------------------------------------------------------------------------------------


def ensure_builtin_rules() -> None:
    """Add the built-in rules that are missing (a new install, or a rule added by an upgrade); flushes."""
    present = set(db.session.scalars(select(AlertRule.name).where(AlertRule.builtin.is_(True))))
    missing = [builtin for builtin in BUILTINS.values() if builtin.name not in present]
    if not missing:
        return
    try:
        with db.session.begin_nested():  # another process (a page, the evaluator) may be adding them right now
            for builtin in missing:
                db.session.add(AlertRule(name=builtin.name, builtin=True, enabled=True, filters={},
                                         group_by=builtin.group_by, threshold=builtin.threshold,
                                         window_seconds=builtin.window_seconds, severity=builtin.severity,
                                         parameter=builtin.parameter))
    except IntegrityError:
        log.info("alerts: the built-in rules were added by another process")


def describe_rule(rule: AlertRule) -> dict:
    return {field: getattr(rule, field) for field in _RULE_FIELDS}


def list_rules() -> list[AlertRule]:
    ensure_builtin_rules()
    return list(db.session.scalars(select(AlertRule).order_by(AlertRule.builtin.desc(), AlertRule.name)))


def get_rule(rule_id: int) -> AlertRule:
    rule = db.session.get(AlertRule, rule_id) if 0 < rule_id < 2**31 else None
    if rule is None:
        raise NotFound(f"There is no alert rule with id {rule_id}.")
    return rule


def _unique(name: str, exclude_id: int | None = None) -> None:
    query = select(AlertRule.id).where(func.lower(AlertRule.name) == name.lower())
    if exclude_id is not None:
        query = query.where(AlertRule.id != exclude_id)
    if name.lower() in BUILTINS or db.session.scalar(query) is not None:
        raise AlertError("name", f"There is already a rule called {name!r}.")


def normalised(filters: dict) -> dict:
    """Filters as the list API reads them back (``login_failed`` -> ``LOGIN_FAILED``), so that an alert's link
    and the rule's page show canonical values."""
    return AuditLogFilterSchema().load(filters).active()


def create_rule(actor, data: dict) -> AlertRule:
    """A custom rule from what ``AlertRuleCreateSchema`` loaded."""
    ensure_builtin_rules()
    _unique(data["name"])
    rule = AlertRule(builtin=False, name=data["name"], enabled=data.get("enabled", True),
                     filters=normalised(data.get("filters") or {}), group_by=data.get("group_by"), threshold=data["threshold"],
                     window_seconds=data["window_seconds"], severity=data["severity"])
    db.session.add(rule)
    db.session.flush()
    _record(actor, ActionType.ALERT_RULE_CREATE, ResourceType.ALERT_RULE, rule.id, f"Added the alert rule {rule.name}",
            {"new": describe_rule(rule)})
    return rule


def update_rule(actor, rule: AlertRule, changes: dict) -> AlertRule:
    """Change a rule; a built-in rule keeps its name, filters and grouping (its matching is its own)."""
    if rule.builtin:
        for field in ("name", "filters", "group_by"):
            if field in changes and changes[field] != getattr(rule, field):
                raise AlertError(field, f"A built-in rule's {field} cannot be changed (copy it as a custom rule).")
    elif "parameter" in changes:
        raise AlertError("parameter", "Only built-in rules take a parameter.")
    if "name" in changes and changes["name"] != rule.name:
        _unique(changes["name"], exclude_id=rule.id)
    if "filters" in changes:
        changes = {**changes, "filters": normalised(changes["filters"])}
    old = describe_rule(rule)
    for field, value in changes.items():
        setattr(rule, field, value)
    new = describe_rule(rule)
    changed = {field for field in _RULE_FIELDS if old[field] != new[field]}
    if changed & {"filters", "group_by", "window_seconds"}:  # its live alerts count what the rule no longer does
        db.session.flush()
        resolve_live(actor, rule, "the rule changed")
    if changed:
        _record(actor, ActionType.ALERT_RULE_UPDATE, ResourceType.ALERT_RULE, rule.id,
                f"Changed the alert rule {rule.name}: {', '.join(sorted(changed))}",
                {"old": {f: old[f] for f in changed}, "new": {f: new[f] for f in changed}})
    db.session.flush()
    return rule


def delete_rule(actor, rule: AlertRule) -> None:
    if rule.builtin:
        raise AlertError("id", f"{rule.name} is a built-in rule: disable it instead (PATCH enabled=false).", 409)
    _record(actor, ActionType.ALERT_RULE_DELETE, ResourceType.ALERT_RULE, rule.id,
            f"Removed the alert rule {rule.name}", {"old": describe_rule(rule)})
    db.session.delete(rule)
    db.session.flush()


# -- alerts -------------------------------------------------------------------------------------------------


def list_alerts(state: str | None = None, rule: str | None = None, limit: int = 200) -> list[Alert]:
    """Open first, then acknowledged, then resolved; the most recently seen first within each."""
    rank = case({AlertState.OPEN.value: 0, AlertState.ACKNOWLEDGED.value: 1}, value=Alert.state, else_=2)
    query = select(Alert).join(Alert.rule)
    if state:
        query = query.where(Alert.state == state)
    if rule:
        query = query.where(AlertRule.name == rule)
    return list(db.session.scalars(query.order_by(rank, Alert.last_seen.desc(), Alert.id.desc()).limit(limit)))


def open_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Alert).where(Alert.state == AlertState.OPEN.value)) or 0


def get_alert(alert_id: int) -> Alert:
    alert = db.session.get(Alert, alert_id) if 0 < alert_id < 2**31 else None
    if alert is None:
        raise NotFound(f"There is no alert with id {alert_id}.")
    return alert


def _describe(alert: Alert) -> dict:
    return {"rule": alert.rule.name, "group": alert.group, "count": alert.count, "severity": alert.severity,
            "state": alert.state}


def _transition(alert: Alert, expected: str, **values) -> bool:
    """Move ``alert`` on only if its state in the database is still ``expected`` (a compare-and-set: an admin and
    the evaluator, or two admins, never both win); then reload it."""
    changed = db.session.execute(update(Alert).where(Alert.id == alert.id, Alert.state == expected).values(**values)
                                 .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(alert)
    return changed == 1


def acknowledge(actor, alert: Alert) -> Alert:
    """Someone is on it: the alert still collects events, and notifies no more."""
    if not _transition(alert, AlertState.OPEN.value, state=AlertState.ACKNOWLEDGED.value, acknowledged_at=utcnow(),
                       acknowledged_by=actor.username if actor else None):
        raise AlertError("state", f"Only an open alert can be acknowledged; this one is {alert.state}.", 409)
    _record(actor, ActionType.ALERT_ACKNOWLEDGED, ResourceType.ALERT, alert.id,
            f"Acknowledged the alert {alert.rule.name}{_group_text(alert)}", _describe(alert))
    db.session.flush()
    return alert


def resolve(actor, alert: Alert, now: datetime | None = None, reason: str = "by hand") -> Alert:
    """Close it (an admin, or the evaluator after a quiet period): the rule's next hit for the group, counted
    from this alert's last event on, opens a new alert. Refused (409) if it is resolved already, or if someone
    changed it since it was read."""
    seen = alert.state
    if seen == AlertState.RESOLVED.value:
        raise AlertError("state", "This alert is resolved already.", 409)
    if not _transition(alert, seen, state=AlertState.RESOLVED.value, resolved_at=now or utcnow()):
        raise AlertError("state", f"The alert changed meanwhile (it is {alert.state} now); reload and try again.", 409)
    _record(actor, ActionType.ALERT_RESOLVED, ResourceType.ALERT, alert.id,
            f"Resolved the alert {alert.rule.name}{_group_text(alert)} ({reason})", {**_describe(alert), "reason": reason})
    if alert.notified_at is not None and seen == AlertState.OPEN.value:  # none for an acknowledged alert
        notify.queue(alert, NotificationEvent.RESOLVED)
    db.session.flush()
    return alert


def resolve_live(actor, rule: AlertRule, reason: str) -> int:
    """Resolve the rule's open and acknowledged alerts (those that another evaluator or admin changes meanwhile
    are left to them); returns how many."""
    resolved = 0
    for alert in db.session.scalars(select(Alert).where(Alert.rule_id == rule.id, Alert.state != AlertState.RESOLVED.value)):
        try:
            resolve(actor, alert, reason=reason)
        except AlertError:
            continue
        resolved += 1
    return resolved


def _group_text(alert: Alert) -> str:
    return f" for {alert.group}" if alert.group else ""


def pending_notifications() -> int:
    return db.session.scalar(select(func.count()).select_from(AlertNotification)
                             .where(AlertNotification.sent_at.is_(None))) or 0
