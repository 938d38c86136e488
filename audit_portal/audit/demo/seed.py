"""Synthetic but realistic audit events for demos, staging and benchmarks."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from ...timeutil import utcnow
from ..record.enums import ActionType, ErrorSeverity, ResourceType, Status
from ..record.events import build_event
from ..record.exceptions import fingerprint

IPS = [f"10.0.{a}.{b}" for a in range(4) for b in (7, 23, 42, 101)] + ["2001:db8::17", "192.0.2.9"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "python-requests/2.32.3",
    "curl/8.5.0",
]
ERRORS = [
    ("ZeroDivisionError", "division by zero", "audit_portal/reports/totals.py", "average_per_day", ErrorSeverity.ERROR),
    ("ValueError", "invalid literal for int() with base 10: 'abc'", "audit_portal/users/import_csv.py", "parse_row",
     ErrorSeverity.ERROR),
    ("KeyError", "'department'", "audit_portal/users/profile.py", "render_profile", ErrorSeverity.ERROR),
    ("marshmallow.exceptions.ValidationError", "{'email': ['Not a valid email address.']}",
     "audit_portal/users/api.py", "post", ErrorSeverity.WARNING),
    ("MemoryError", "", "audit_portal/audit/exporter.py", "build_report", ErrorSeverity.CRITICAL),
    ("SystemError", "error return without exception set", "audit_portal/integrations/ldap.py", "bind",
     ErrorSeverity.CRITICAL),
    ("sqlalchemy.exc.OperationalError", "(psycopg2.OperationalError) server closed the connection unexpectedly",
     "audit_portal/database.py", "execute", ErrorSeverity.ERROR),
]
PATHS = ["/admin/users/", "/admin/audit-logs/", "/api/v1/audit-logs/", "/auth/login", "/api/v1/users/",
         "/admin/users/7/edit", "/api/v1/audit-logs/export", "/admin/audit-logs/errors"]


def _stack(rng: random.Random, etype, message, filename, function):
    return (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/.venv/lib/python3.11/site-packages/flask/app.py", line 917, in full_dispatch_request\n'
        "    rv = self.dispatch_request()\n"
        f'  File "/srv/app/{filename}", line {rng.randint(20, 300)}, in {function}\n'
        f"    result = {function}(payload)\n"
        f"{etype}: {message}\n"
    )


def _verb(action: ActionType) -> str:
    return action.value.lower().replace("_", " ")


# Each scenario builds one event from (rng, common fields, demo metadata, actor name, target id).


def _request(rng, common, meta, uname, target):
    path = rng.choice(PATHS)
    method = rng.choice(["GET", "GET", "GET", "POST", "PATCH", "DELETE"])
    code = rng.choice([200] * 12 + [201, 302, 400, 403, 404, 422, 500])
    status = Status.SUCCESS if code < 400 else Status.FAILURE if code < 500 else Status.ERROR
    return build_event(ActionType.REQUEST, ResourceType.REQUEST, None, f"{method} {path} answered {code}",
                       status=status, http_method=method, path=path, status_code=code,
                       duration_ms=rng.randint(2, 900), metadata=meta or None, **common)


def _session(action: ActionType, text: str):
    def scenario(rng, common, meta, uname, target):
        return build_event(action, ResourceType.SESSION, common["user_id"], text.format(user=uname),
                           metadata=meta or None, **common)

    return scenario


def _refused_login(action: ActionType, reason: str):
    def scenario(rng, common, meta, uname, target):
        attempted = rng.choice([uname or "admin", "root", "administrator", "guest"])
        common = {**common, "user_id": None, "username": None}
        return build_event(action, ResourceType.SESSION, None, f"Failed login for '{attempted}': {reason}",
                           status=Status.FAILURE, metadata={**meta, "attempted_username": attempted, "reason": reason},
                           **common)

    return scenario


def _user_change(action: ActionType):
    def scenario(rng, common, meta, uname, target):
        old, new = rng.sample(["active", "pending", "suspended"], 2)
        return build_event(action, ResourceType.USER, target, f"{uname} {_verb(action)} on user-{target}",
                           metadata={**meta, "old": {"status": old}, "new": {"status": new}}, **common)

    return scenario


def _security(action: ActionType, resource: ResourceType, status: Status = Status.SUCCESS):
    def scenario(rng, common, meta, uname, target):
        return build_event(action, resource, target, f"{uname} {_verb(action)}", status=status, is_sensitive=True,
                           metadata=meta or None, **common)

    return scenario


def _data(action: ActionType):
    def scenario(rng, common, meta, uname, target):
        resource = rng.choice([ResourceType.DATA_UPLOAD, ResourceType.SETTING, ResourceType.ROLE])
        return build_event(action, resource, target, f"{uname} {_verb(action)} {_verb(resource)} {target}",
                           metadata=meta or None, **common)

    return scenario


def _maintenance(action: ActionType, status: Status, text: str):
    def scenario(rng, common, meta, uname, target):
        resource = ResourceType.AUDIT_LOG if action is ActionType.RETENTION_PURGE else ResourceType.SYSTEM
        return build_event(action, resource, None, text, status=status, metadata={**meta, "events": target}, **common)

    return scenario


def _stream(action: ActionType):
    def scenario(rng, common, meta, uname, target):
        name = rng.choice(["splunk", "elastic", "siem-syslog"])
        return build_event(action, ResourceType.STREAM, target, f"{uname} {_verb(action)} stream {name}",
                           metadata={**meta, "name": name, "kind": "webhook"}, **common)

    return scenario


def _alert(action: ActionType):
    def scenario(rng, common, meta, uname, target):
        rule = rng.choice(["brute_force_ip", "new_admin", "error_spike", "large_export"])
        if action.name.startswith("ALERT_RULE"):
            verb = {"CREATE": "added", "UPDATE": "changed", "DELETE": "removed"}[action.name.rsplit("_", 1)[1]]
            return build_event(action, ResourceType.ALERT_RULE, target, f"{uname} {verb} the alert rule {rule}",
                               metadata={**meta, "rule": rule}, **common)
        text = {ActionType.ALERT_TRIGGERED: f"Alert {rule}: {target} matching events",
                ActionType.ALERT_ACKNOWLEDGED: f"{uname} acknowledged the alert {rule}",
                ActionType.ALERT_RESOLVED: f"{uname} resolved the alert {rule}"}[action]
        return build_event(action, ResourceType.ALERT, target, text, metadata={**meta, "rule": rule, "count": target},
                           **common)

    return scenario


def _error(index: int, action: ActionType | None = None):
    def scenario(rng, common, meta, uname, target):
        etype, message, filename, function, severity = ERRORS[index]
        location = f"{filename}:{function}"
        chosen = action or rng.choice([ActionType.EXCEPTION_RAISED, ActionType.ERROR_OCCURRED])
        return build_event(chosen, ResourceType.SYSTEM, None, f"{etype}: {message}"[:300], status=Status.ERROR,
                           severity=severity, error_type=etype, stack_trace=_stack(rng, etype, message, filename, function),
                           fingerprint=fingerprint(etype, location), http_method="POST", path=rng.choice(PATHS),
                           status_code=500, metadata={**meta, "message": message, "location": location}, **common)

    return scenario


#: Action types the seed never fakes: they carry the integrity state (the hash chain's checkpoints and the
#: latest verification result), which demo events would falsify.
NOT_SEEDED = frozenset({ActionType.CHAIN_CHECKPOINT, ActionType.AUDIT_VERIFY})
#: (weight, scenario). Every other action type, every status and every severity has at least one scenario.
SCENARIOS = [
    (0.30, _request),
    (0.15, _session(ActionType.LOGIN, "{user} logged in")),
    (0.07, _session(ActionType.LOGOUT, "{user} logged out")),
    (0.07, _refused_login(ActionType.LOGIN_FAILED, "wrong password")),
    (0.01, _refused_login(ActionType.LOGIN_THROTTLED, "too many attempts")),
    *[(weight, _user_change(action)) for weight, action in [
        (0.02, ActionType.CREATE), (0.05, ActionType.UPDATE), (0.03, ActionType.STATUS_CHANGE),
        (0.02, ActionType.ACTIVATE), (0.02, ActionType.DEACTIVATE), (0.02, ActionType.DELETE),
        (0.02, ActionType.ROLE_CHANGE)]],
    (0.012, _security(ActionType.PASSWORD_CHANGE, ResourceType.USER)),
    (0.01, _security(ActionType.TOKEN_CREATE, ResourceType.API_TOKEN)),
    (0.008, _security(ActionType.TOKEN_REVOKE, ResourceType.API_TOKEN)),
    (0.005, _security(ActionType.TOKEN_AUTH_FAILED, ResourceType.API_TOKEN, Status.FAILURE)),
    (0.01, _security(ActionType.PERMISSION_DENIED, ResourceType.REQUEST, Status.FAILURE)),
    (0.01, _security(ActionType.EXPORT, ResourceType.AUDIT_LOG)),
    *[(0.015, _data(action)) for action in (ActionType.CREATE, ActionType.READ, ActionType.UPDATE, ActionType.DELETE)],
    (0.001, _maintenance(ActionType.RETENTION_PURGE, Status.SUCCESS, "Purged audit events older than 365 days")),
    (0.001, _maintenance(ActionType.AUDIT_FAILURE, Status.ERROR, "An audit event could not be recorded in full")),
    *[(0.0005, _stream(action)) for action in (ActionType.STREAM_CREATE, ActionType.STREAM_UPDATE,
                                                ActionType.STREAM_DELETE)],
    *[(0.0005, _alert(action)) for action in (ActionType.ALERT_TRIGGERED, ActionType.ALERT_ACKNOWLEDGED,
                                               ActionType.ALERT_RESOLVED, ActionType.ALERT_RULE_CREATE,
                                               ActionType.ALERT_RULE_UPDATE, ActionType.ALERT_RULE_DELETE)],
    # Errors: 10% of events, spread over ERRORS; two more pin down both error action types.
    *[(0.10 / len(ERRORS), _error(i)) for i in range(len(ERRORS))],
    (0.0, _error(0, ActionType.EXCEPTION_RAISED)),
    (0.0, _error(1, ActionType.ERROR_OCCURRED)),
]


def _event(rng: random.Random, scenario, users: list[tuple[int | None, str]], when, demo: bool) -> dict:
    uid, uname = rng.choice(users)
    common = dict(timestamp=when, user_id=uid, username=uname, ip_address=rng.choice(IPS),
                  user_agent_=rng.choice(AGENTS), request_id_=str(uuid.uuid4()))
    meta = {"demo": True} if demo else {}
    return scenario(rng, common, meta, uname, rng.randint(1, 500))


def generate(count: int, users: list[tuple[int | None, str]], *, days: int = 30, demo: bool = True,
             seed: int | None = None):
    """Yield ``count`` events spread over the last ``days`` days, oldest first. The first events go
    through every scenario once, so even a small count has every action type, status and severity."""
    rng = random.Random(seed)
    weights = [weight for weight, _ in SCENARIOS]
    scenarios = [scenario for _, scenario in SCENARIOS]
    now = utcnow()
    span = timedelta(days=days).total_seconds()
    step = span / max(count, 1)
    for i in range(count):
        when = now - timedelta(seconds=span - i * step + rng.random() * step * 0.5)
        scenario = scenarios[i] if i < len(scenarios) else rng.choices(scenarios, weights)[0]
        yield _event(rng, scenario, users, when, demo)
