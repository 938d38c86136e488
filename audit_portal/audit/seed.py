"""Synthetic but realistic audit events for demos, staging and benchmarks."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from ..timeutil import utcnow
from .enums import ActionType, ErrorSeverity, ResourceType, Status
from .errors_info import fingerprint
from .events import build_event

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


def _stack(etype, message, filename, function):
    return (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/.venv/lib/python3.11/site-packages/flask/app.py", line 917, in full_dispatch_request\n'
        "    rv = self.dispatch_request()\n"
        f'  File "/srv/app/{filename}", line {random.randint(20, 300)}, in {function}\n'
        f"    result = {function}(payload)\n"
        f"{etype}: {message}\n"
    )


def _event(rng: random.Random, users: list[tuple[int | None, str]], when, demo: bool) -> dict:
    uid, uname = rng.choice(users)
    ip, agent = rng.choice(IPS), rng.choice(AGENTS)
    common = dict(timestamp=when, user_id=uid, username=uname, ip_address=ip, user_agent_=agent,
                  request_id_=str(uuid.uuid4()))
    meta = {"demo": True} if demo else {}
    roll = rng.random()
    target = rng.randint(1, 500)
    if roll < 0.30:
        path = rng.choice(PATHS)
        method = rng.choice(["GET", "GET", "GET", "POST", "PATCH", "DELETE"])
        code = rng.choice([200] * 12 + [201, 302, 400, 403, 404, 422, 500])
        status = Status.SUCCESS if code < 400 else Status.FAILURE if code < 500 else Status.ERROR
        return build_event(ActionType.REQUEST, ResourceType.REQUEST, None, f"{method} {path} answered {code}",
                           status=status, http_method=method, path=path, status_code=code,
                           duration_ms=rng.randint(2, 900), metadata=meta or None, **common)
    if roll < 0.45:
        return build_event(ActionType.LOGIN, ResourceType.SESSION, uid, f"{uname} logged in", metadata=meta or None,
                           **common)
    if roll < 0.53:
        attempted = rng.choice([uname or "admin", "root", "administrator", "guest"])
        common.update(user_id=None, username=None)
        return build_event(ActionType.LOGIN_FAILED, ResourceType.SESSION, None,
                           f"Failed login for '{attempted}': wrong password", status=Status.FAILURE,
                           metadata={**meta, "attempted_username": attempted, "reason": "wrong password"}, **common)
    if roll < 0.60:
        return build_event(ActionType.LOGOUT, ResourceType.SESSION, uid, f"{uname} logged out", metadata=meta or None,
                           **common)
    if roll < 0.78:
        action = rng.choice([ActionType.CREATE, ActionType.UPDATE, ActionType.UPDATE, ActionType.STATUS_CHANGE,
                             ActionType.ACTIVATE, ActionType.DEACTIVATE, ActionType.DELETE, ActionType.ROLE_CHANGE])
        old, new = rng.sample(["active", "pending", "suspended"], 2)
        return build_event(action, ResourceType.USER, target,
                           f"{uname} {action.value.lower().replace('_', ' ')} on user-{target}",
                           metadata={**meta, "old": {"status": old}, "new": {"status": new}}, **common)
    if roll < 0.84:
        action = rng.choice([ActionType.PASSWORD_CHANGE, ActionType.TOKEN_CREATE, ActionType.TOKEN_REVOKE,
                             ActionType.PERMISSION_DENIED, ActionType.EXPORT])
        resource = {ActionType.TOKEN_CREATE: ResourceType.API_TOKEN, ActionType.TOKEN_REVOKE: ResourceType.API_TOKEN,
                    ActionType.EXPORT: ResourceType.AUDIT_LOG}.get(action, ResourceType.USER)
        status = Status.FAILURE if action is ActionType.PERMISSION_DENIED else Status.SUCCESS
        return build_event(action, resource, target, f"{uname} {action.value.lower().replace('_', ' ')}",
                           status=status, is_sensitive=True, metadata=meta or None, **common)
    if roll < 0.90:
        action = rng.choice([ActionType.CREATE, ActionType.READ, ActionType.UPDATE, ActionType.DELETE])
        resource = rng.choice([ResourceType.DATA_UPLOAD, ResourceType.SETTING, ResourceType.ROLE])
        return build_event(action, resource, target,
                           f"{uname} {action.value.lower()} {resource.value.lower().replace('_', ' ')} {target}",
                           metadata=meta or None, **common)
    etype, message, filename, function, severity = rng.choice(ERRORS)
    location = f"{filename}:{function}"
    return build_event(rng.choice([ActionType.EXCEPTION_RAISED, ActionType.ERROR_OCCURRED]), ResourceType.SYSTEM,
                       None, f"{etype}: {message}"[:300], status=Status.ERROR, severity=severity, error_type=etype,
                       stack_trace=_stack(etype, message, filename, function), fingerprint=fingerprint(etype, location),
                       http_method="POST", path=rng.choice(PATHS), status_code=500,
                       metadata={**meta, "message": message, "location": location}, **common)


def generate(count: int, users: list[tuple[int | None, str]], *, days: int = 30, demo: bool = True,
             seed: int | None = None):
    """Yield ``count`` events spread over the last ``days`` days, oldest first."""
    rng = random.Random(seed)
    now = utcnow()
    span = timedelta(days=days).total_seconds()
    step = span / max(count, 1)
    for i in range(count):
        when = now - timedelta(seconds=span - i * step + rng.random() * step * 0.5)
        yield _event(rng, users, when, demo)
