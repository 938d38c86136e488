"""The seed's scenarios: each makes the fields of one event that follow the ones every event draws
(``BODY_COLUMNS``), as COPY text.

What a scenario writes is cleaned once, through the sanitisers ``build_event`` applies, and kept per user and
variant as a template; a row then only fills in its own number (a target id, a duration, a line number), which
no sanitiser changes."""

from __future__ import annotations

from ..record import models as m
from ..record.enums import ActionType, ErrorSeverity, ResourceType, Status, category_for
from ..record.events import multi_line, single_line
from ..record.exceptions import fingerprint
from ..record.redaction import redact, redact_text
from .copytext import NULL, field

BODY_COLUMNS = ("user_id", "username", "action_type", "resource_type", "resource_id", "category", "description",
                "metadata", "status", "is_sensitive", "severity", "error_type", "stack_trace", "fingerprint",
                "http_method", "path", "status_code", "duration_ms")
#: severity, error_type, stack_trace, fingerprint; http_method, path, status_code, duration_ms.
NO_ERROR = NO_REQUEST = "\t".join([NULL] * 4)
ANONYMOUS = f"{NULL}\t{NULL}"
#: Where a template takes the row's own number. No cleaned text holds a NUL (``single_line`` escapes control
#: characters, ``storable`` NUL itself, JSON escapes them).
MARK = "\x00"

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
METHODS = ["GET", "GET", "GET", "POST", "PATCH", "DELETE"]
STATUS_CODES = [200] * 12 + [201, 302, 400, 403, 404, 422, 500]
#: Every (path, method, status code): one uniform pick draws each as its own uniform pick would.
_REQUESTS = [(path, method, code) for path in PATHS for method in METHODS for code in STATUS_CODES]
#: Every ordered pair of two different account states (what a random sample of two gives).
_STATE_CHANGES = [(old, new) for old in ("active", "pending", "suspended") for new in ("active", "pending", "suspended")
                  if old != new]


class Meta:
    """The metadata every seeded event carries: ``{"demo": true}`` (or nothing), as COPY text."""

    def __init__(self, demo: bool):
        self.base = {"demo": True} if demo else {}
        self.plain = self.json() if demo else NULL

    def json(self, **extra) -> str:
        return field(redact({**self.base, **extra}))


class Actor:
    """A user the seed acts as, with the templates made for them so far."""

    __slots__ = ("who", "name", "id", "templates")

    def __init__(self, user_id: int | None, username: str | None):
        self.who = f"{field(user_id)}\t{field(single_line(username, m.USERNAME_SNAPSHOT_MAX))}"
        self.name = username
        self.id = field(None if user_id is None else single_line(user_id, 64))
        self.templates: dict[tuple, tuple[str, ...]] = {}

    def fill(self, key: tuple, make, number: str = "") -> str:
        """The template ``make()`` (a body with ``MARK`` where the number goes) made once per ``key``, filled."""
        parts = self.templates.get(key)
        if parts is None:
            parts = self.templates[key] = tuple(make().split(MARK))
        return number.join(parts)


def sentence(text: str) -> str:
    """A description as ``build_event`` stores it, as COPY text."""
    return field(single_line(redact_text(text), m.DESCRIPTION_MAX))


def body(who: str, action: ActionType, resource: ResourceType, resource_id: str, description: str, metadata: str, *,
         status: Status = Status.SUCCESS, sensitive: bool = False, error: str = NO_ERROR,
         request: str = NO_REQUEST) -> str:
    """The ``BODY_COLUMNS`` of one event, each given as COPY text."""
    return "\t".join((who, action.value, resource.value, resource_id, category_for(action, resource).value,
                      description, metadata, status.value, "t" if sensitive else "f", error, request))


def _verb(value) -> str:
    return value.value.lower().replace("_", " ")


# Each scenario makes one event's body from (rng, actor, target id as text, metadata).


def request(rng, actor, target, meta):
    path, method, code = rng.choice(_REQUESTS)
    status = Status.SUCCESS if code < 400 else Status.FAILURE if code < 500 else Status.ERROR
    return actor.fill(("request", path, method, code), lambda: body(
        actor.who, ActionType.REQUEST, ResourceType.REQUEST, NULL, sentence(f"{method} {path} answered {code}"),
        meta.plain, status=status,
        request=f"{method}\t{field(single_line(redact_text(path), m.PATH_MAX))}\t{code}\t{MARK}"),
        str(rng.randint(2, 900)))


def session(action: ActionType, text: str):
    def scenario(rng, actor, target, meta):
        return actor.fill(("session", action), lambda: body(actor.who, action, ResourceType.SESSION, actor.id,
                                                  sentence(text.format(user=actor.name)), meta.plain))

    return scenario


def refused_login(action: ActionType, reason: str):
    def scenario(rng, actor, target, meta):
        attempted = rng.choice((actor.name or "admin", "root", "administrator", "guest"))
        return actor.fill(("refused", action, attempted), lambda: body(
            ANONYMOUS, action, ResourceType.SESSION, NULL, sentence(f"Failed login for '{attempted}': {reason}"),
            meta.json(attempted_username=attempted, reason=reason), status=Status.FAILURE))

    return scenario


def user_change(action: ActionType):
    def scenario(rng, actor, target, meta):
        old, new = rng.choice(_STATE_CHANGES)
        return actor.fill(("change", action, old, new), lambda: body(
            actor.who, action, ResourceType.USER, MARK, sentence(f"{actor.name} {_verb(action)} on user-") + MARK,
            meta.json(old={"status": old}, new={"status": new})), target)

    return scenario


def security(action: ActionType, resource: ResourceType, status: Status = Status.SUCCESS):
    def scenario(rng, actor, target, meta):
        return actor.fill(("security", action), lambda: body(
            actor.who, action, resource, MARK, sentence(f"{actor.name} {_verb(action)}"), meta.plain, status=status,
            sensitive=True), target)

    return scenario


def data(action: ActionType):
    def scenario(rng, actor, target, meta):
        resource = rng.choice((ResourceType.DATA_UPLOAD, ResourceType.SETTING, ResourceType.ROLE))
        return actor.fill(("data", action, resource), lambda: body(
            actor.who, action, resource, MARK, sentence(f"{actor.name} {_verb(action)} {_verb(resource)} ") + MARK,
            meta.plain), target)

    return scenario


# Rare scenarios (a few in a thousand events) build each body afresh.


def maintenance(action: ActionType, status: Status, text: str):
    resource = ResourceType.AUDIT_LOG if action is ActionType.RETENTION_PURGE else ResourceType.SYSTEM

    def scenario(rng, actor, target, meta):
        return body(actor.who, action, resource, NULL, sentence(text), meta.json(events=int(target)), status=status)

    return scenario


def stream(action: ActionType):
    def scenario(rng, actor, target, meta):
        name = rng.choice(["splunk", "elastic", "siem-syslog"])
        return body(actor.who, action, ResourceType.STREAM, target, sentence(f"{actor.name} {_verb(action)} stream {name}"),
                    meta.json(name=name, kind="webhook"))

    return scenario


_TRAIL_TEXT = {
    ActionType.HOLD_CREATE: (ResourceType.LEGAL_HOLD, "{actor} placed a legal hold on {span} (litigation {n})"),
    ActionType.HOLD_RELEASE: (ResourceType.LEGAL_HOLD, "{actor} released legal hold {n}"),
    ActionType.ERASURE_REQUEST: (ResourceType.ERASURE_REQUEST, "{actor} asked to erase the personal data of user {n}"),
    ActionType.ERASURE_REJECT: (ResourceType.ERASURE_REQUEST, "{actor} rejected erasure request {n}"),
    ActionType.ERASURE: (ResourceType.ERASURE_REQUEST, "{actor} approved erasure request {n}; it was carried out"),
}


def trail(action: ActionType):
    """Legal holds and erasure requests (the trail's own governance)."""
    resource, text = _TRAIL_TEXT[action]

    def scenario(rng, actor, target, meta):
        return body(actor.who, action, resource, target,
                    sentence(text.format(actor=actor.name, n=target, span="the first quarter")), meta.json(id=int(target)))

    return scenario


def alert(action: ActionType):
    def scenario(rng, actor, target, meta):
        rule = rng.choice(["brute_force_ip", "new_admin", "error_spike", "large_export"])
        if action.name.startswith("ALERT_RULE"):
            verb = {"CREATE": "added", "UPDATE": "changed", "DELETE": "removed"}[action.name.rsplit("_", 1)[1]]
            return body(actor.who, action, ResourceType.ALERT_RULE, target,
                        sentence(f"{actor.name} {verb} the alert rule {rule}"), meta.json(rule=rule))
        text = {ActionType.ALERT_TRIGGERED: f"Alert {rule}: {target} matching events",
                ActionType.ALERT_ACKNOWLEDGED: f"{actor.name} acknowledged the alert {rule}",
                ActionType.ALERT_RESOLVED: f"{actor.name} resolved the alert {rule}"}[action]
        return body(actor.who, action, ResourceType.ALERT, target, sentence(text),
                    meta.json(rule=rule, count=int(target)))

    return scenario


def error(index: int, action: ActionType | None = None):
    etype, message, filename, function, severity = ERRORS[index]
    location = f"{filename}:{function}"
    # The stack trace's line number is the row's own; the text around it is cleaned once.
    before = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/.venv/lib/python3.11/site-packages/flask/app.py", line 917, in full_dispatch_request\n'
        "    rv = self.dispatch_request()\n"
        f'  File "/srv/app/{filename}", line '
    )
    after = f", in {function}\n    result = {function}(payload)\n{etype}: {message}\n"
    stack = f"{field(multi_line(before, m.STACK_TRACE_MAX))}{MARK}{field(multi_line(after, m.STACK_TRACE_MAX))}"
    error_fields = (f"{severity.value}\t{field(single_line(etype, m.ERROR_TYPE_MAX))}\t{stack}\t"
                    f"{fingerprint(etype, location)}")

    def scenario(rng, actor, target, meta):
        chosen = action or rng.choice((ActionType.EXCEPTION_RAISED, ActionType.ERROR_OCCURRED))
        path = rng.choice(PATHS)
        return actor.fill(("error", index, chosen, path), lambda: body(
            actor.who, chosen, ResourceType.SYSTEM, NULL, sentence(f"{etype}: {message}"[:300]),
            meta.json(message=message, location=location), status=Status.ERROR, error=error_fields,
            request=f"POST\t{field(single_line(redact_text(path), m.PATH_MAX))}\t500\t{NULL}"), str(rng.randint(20, 300)))

    return scenario
