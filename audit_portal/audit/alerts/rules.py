"""What each rule counts: the built-in rules (their defaults and their own matching) and custom rules (the list
API's filters), as SQL over ``audit_logs`` by timestamp, so that an event committed a moment late still counts.

A rule's *hits* are the groups whose count over the window reaches the threshold (at least the threshold). An
alert's count is recounted from its window's start on each evaluation, so it grows with the attack."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, literal, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement, Select

from ..read.query import ATTEMPTED_USERNAME, AuditFilters, apply_filters
from ..read.schemas import AuditLogFilterSchema
from ..record.enums import ActionType, ResourceType, Status
from ..record.models import AuditLog
from .models import AlertRule, AlertSeverity, GroupBy

A, S = ActionType, AlertSeverity
#: Alert events never feed a rule (an alert about alerts would feed itself).
ALERT_ACTIONS = tuple(action.value for action in ActionType if action.value.startswith("ALERT_"))
#: The name a failed login tried (stored as typed in its metadata), or the actor's name snapshot.
USERNAME = func.coalesce(AuditLog.username, ATTEMPTED_USERNAME)
_FAILED_LOGINS = AuditLog.action_type.in_([A.LOGIN_FAILED.value, A.LOGIN_THROTTLED.value])
_NEW_ROLE = AuditLog.event_metadata[("new", "role")].as_string()
_GROUPS: dict[str, ColumnElement] = {
    GroupBy.IP_ADDRESS: AuditLog.ip_address, GroupBy.USER_ID: AuditLog.user_id, GroupBy.USERNAME: USERNAME,
    GroupBy.ACTION_TYPE: AuditLog.action_type, GroupBy.FINGERPRINT: AuditLog.fingerprint,
}


@dataclass(frozen=True)
class Builtin:
    name: str
    summary: str
    threshold: int
    window_seconds: int
    severity: str
    group_by: str | None = None
    parameter: int | None = None


BUILTINS = {b.name: b for b in (
    Builtin("brute_force_ip", "Failed logins from one IP address", 20, 300, S.ERROR, GroupBy.IP_ADDRESS),
    Builtin("brute_force_username", "Failed logins for one username", 10, 300, S.ERROR, GroupBy.USERNAME),
    Builtin("password_spraying", "Distinct usernames failing from one IP address", 10, 600, S.CRITICAL,
            GroupBy.IP_ADDRESS),
    Builtin("login_throttled", "The login throttle refused someone", 1, 300, S.WARNING, GroupBy.IP_ADDRESS),
    Builtin("new_admin", "A user was created as an admin or given the admin role", 1, 3600, S.CRITICAL),
    Builtin("large_export", "An export of at least <threshold> rows", 10_000, 3600, S.WARNING, GroupBy.USERNAME),
    Builtin("new_error", "An error fingerprint seen for the first time", 1, 3600, S.ERROR, GroupBy.FINGERPRINT),
    Builtin("error_regression", "An error fingerprint seen again after <parameter> days of silence", 1, 3600,
            S.ERROR, GroupBy.FINGERPRINT, parameter=7),
    Builtin("error_spike", "Errors across the app", 50, 300, S.CRITICAL),
    Builtin("verification_failed", "`flask audit verify` found the hash chain broken", 1, 3600, S.CRITICAL),
    Builtin("audit_write_failure", "An audit event could not be built (a stand-in was stored)", 1, 3600, S.CRITICAL),
)}


def group_expression(rule: AlertRule) -> ColumnElement | None:
    if rule.name == "new_admin" and rule.builtin:
        return AuditLog.resource_id  # one alert per new admin
    return _GROUPS[rule.group_by] if rule.group_by else None


def matching(query: Select, rule: AlertRule) -> Select:
    """``query`` (a select from ``audit_logs``) narrowed to the events the rule counts, outside any window."""
    if not rule.builtin:
        return apply_filters(query, custom_filters(rule)).where(AuditLog.action_type.not_in(ALERT_ACTIONS))
    return query.where(*_builtin_conditions(rule))


def _builtin_conditions(rule: AlertRule) -> list[ColumnElement]:
    name = rule.name
    if name in ("brute_force_ip", "brute_force_username", "password_spraying"):
        return [_FAILED_LOGINS]
    if name == "login_throttled":
        return [AuditLog.action_type == A.LOGIN_THROTTLED.value]
    if name == "new_admin":
        became_admin = AuditLog.action_type.in_([A.CREATE.value, A.ROLE_CHANGE.value])
        return [became_admin, AuditLog.resource_type == ResourceType.USER.value, _NEW_ROLE == "admin"]
    if name == "large_export":
        return [AuditLog.action_type == A.EXPORT.value,
                AuditLog.event_metadata["row_count"].as_integer() >= rule.threshold]
    if name in ("new_error", "error_regression", "error_spike"):
        errors = [AuditLog.status == Status.ERROR.value]
        return errors if name == "error_spike" else [*errors, AuditLog.fingerprint.is_not(None)]
    if name == "verification_failed":
        return [AuditLog.action_type == A.AUDIT_VERIFY.value, AuditLog.status == Status.FAILURE.value]
    if name == "audit_write_failure":
        return [AuditLog.action_type == A.AUDIT_FAILURE.value]
    raise ValueError(f"unknown built-in rule {name!r}")


def custom_filters(rule: AlertRule) -> AuditFilters:
    return AuditLogFilterSchema().load(rule.filters or {})


def count_expression(rule: AlertRule) -> ColumnElement:
    if rule.builtin and rule.name == "password_spraying":
        return func.count(func.distinct(USERNAME))
    return func.count()


def minimum(rule: AlertRule) -> int:
    """The count that opens an alert (large_export's threshold is rows per export: one such export is enough)."""
    return 1 if rule.builtin and rule.name == "large_export" else max(1, rule.threshold)


def _novelty(rule: AlertRule, window_start: datetime) -> list[ColumnElement]:
    """new_error: no event of the fingerprint before the window; error_regression: one before, none in the
    ``parameter`` days before the window."""
    earlier = aliased(AuditLog)
    same = and_(earlier.fingerprint == AuditLog.fingerprint, earlier.status == Status.ERROR.value)
    before = exists().where(same, earlier.timestamp < window_start)
    if rule.name == "new_error":
        return [~before]
    silence = window_start - timedelta(days=rule.parameter or 7)
    return [before, ~exists().where(same, earlier.timestamp >= silence, earlier.timestamp < window_start)]


@dataclass
class Hit:
    group_key: str
    count: int
    first_seen: datetime
    last_seen: datetime
    #: Where its count starts, when not at the rule's window (after a resolved alert of the group).
    since: datetime | None = None


def hits(session, rule: AlertRule, now: datetime) -> list[Hit]:
    """The groups whose count over the rule's window reaches its threshold."""
    window_start = now - timedelta(seconds=rule.window_seconds)
    group = group_expression(rule)
    count = count_expression(rule)
    where = [AuditLog.timestamp >= window_start, AuditLog.timestamp <= now]
    if rule.builtin and rule.name in ("new_error", "error_regression"):
        where += _novelty(rule, window_start)
    key = group if group is not None else literal("")
    query = matching(select(key, count, func.min(AuditLog.timestamp), func.max(AuditLog.timestamp)), rule)
    query = query.where(*where)
    if group is not None:  # events without the value (an export from the CLI has no user) are a group of their own
        query = query.group_by(group)
    query = query.having(count >= minimum(rule))
    return [Hit(str(k) if k is not None else "", n, first, last) for k, n, first, last in session.execute(query)
            if n]


def recount(session, rule: AlertRule, group_key: str,
            since: datetime) -> tuple[int, datetime | None, datetime | None]:
    """(events, the oldest one's time, the newest one's) of the rule and group from ``since`` on."""
    group = group_expression(rule)
    query = matching(select(count_expression(rule), func.min(AuditLog.timestamp), func.max(AuditLog.timestamp)), rule)
    query = query.where(AuditLog.timestamp >= since)
    if group is not None and group_key == "":
        query = query.where(group.is_(None))
    elif group is not None:
        query = query.where(group == (int(group_key) if rule.group_by == GroupBy.USER_ID else group_key))
    count, first, last = session.execute(query).one()
    return count or 0, first, last


def event_filters(rule: AlertRule, group_key: str, since: datetime) -> dict:
    """The list API's filters that select the alert's events (its ``events_url``)."""
    filters: dict = {"date_from": since.isoformat()}
    if not rule.builtin:
        filters.update(rule.filters or {})
    elif rule.name in ("brute_force_ip", "brute_force_username", "password_spraying"):
        filters.update(resource_type=ResourceType.SESSION.value, status=Status.FAILURE.value)
    elif rule.name == "login_throttled":
        filters["action_type"] = A.LOGIN_THROTTLED.value
    elif rule.name == "new_admin":
        filters["resource_type"] = ResourceType.USER.value
    elif rule.name == "large_export":
        filters["action_type"] = A.EXPORT.value
    elif rule.name in ("new_error", "error_regression", "error_spike"):
        filters["status"] = Status.ERROR.value
    elif rule.name == "verification_failed":
        filters.update(action_type=A.AUDIT_VERIFY.value, status=Status.FAILURE.value)
    elif rule.name == "audit_write_failure":
        filters["action_type"] = A.AUDIT_FAILURE.value
    if group_key and rule.group_by and not (rule.builtin and rule.name == "new_admin"):
        filters[rule.group_by] = group_key
    return filters
