"""Recording audit events: ``log_audit``, its helpers and the ``@audit_log`` decorator.

Two write paths (see docs/audit-logging-guide.md):

* ``transactional=True``: the event is added to the current database session and commits together
  with the change it describes (domain services use this); on PostgreSQL it goes through the outbox
  (``outbox.py``), which the background writer moves into ``audit_logs`` moments later.
* the default: the event is queued to the background writer and written in its own transaction,
  off the request path (request events, errors, failed attempts whose change rolled back).

None of these functions raises into its caller.
"""

from __future__ import annotations

import functools
import inspect
import logging

from flask import current_app, has_app_context, has_request_context, request

from ...extensions import db
from ...metrics.families import count_on_commit
from ...timeutil import utcnow
from ..record.actors import username_of
from ..record.enums import ActionType, ResourceType, Status
from ..record.events import build_event
from ..record.exceptions import error_type_name, fingerprint, format_stack, innermost_app_frame, severity_for
from . import outbox
from .context import current_actor, request_fields
from .inserts import insert_events

log = logging.getLogger(__name__)


def _enabled() -> bool:
    return has_app_context() and current_app.config.get("AUDIT_ENABLED", True)


def _build(action_type, resource_type, resource_id, description, fields: dict) -> dict:
    """Build an event; if that fails (a bug in audit code), build a minimal event that says so."""
    try:
        context = request_fields()
        credential, actor_id = context.pop("credential"), context["user_id"]
        if fields.get("user_id") is not None:
            # An explicit actor comes with its own name (or none): never the logged-in user's.
            del context["user_id"], context["username"]
        for key, value in list(fields.items()):
            if value is None:
                fields.pop(key)
        if credential and fields.get("user_id", actor_id) == actor_id:
            fields["metadata"] = {**(fields.get("metadata") or {}), "client": credential}
        return build_event(action_type, resource_type, resource_id, description, **{**context, **fields})
    except Exception as exc:  # noqa: BLE001
        log.exception("audit: could not build a %s event", _safe_str(action_type, 40))
        return build_event(
            ActionType.AUDIT_FAILURE,
            ResourceType.SYSTEM,
            None,
            f"An audit event could not be recorded in full ({type(exc).__name__})",
            timestamp=utcnow(),
            status=Status.ERROR,
            metadata={"intended_action": _safe_str(action_type, 40), "error": type(exc).__name__,
                      "reason": _safe_str(exc, 300)},
        )


def _safe_str(value, limit: int) -> str:
    """``str(value)`` cut to ``limit``, or a placeholder when even that fails."""
    try:
        return str(value)[:limit]
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}>"


def log_audit(
    user_id: int | None,
    action_type: ActionType | str,
    resource_type: ResourceType | str,
    resource_id: object = None,
    description: str = "",
    metadata: dict | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    status: Status | str = Status.SUCCESS,
    *,
    transactional: bool = False,
    via_outbox: bool = True,
    **fields,
) -> str | None:
    """Record one audit event and return its ``event_id`` (None when auditing is off).

    ``fields`` may carry any other column of the record: ``username``, ``is_sensitive``, ``severity``,
    ``error_type``, ``stack_trace``, ``fingerprint``, ``http_method``, ``path``, ``status_code``,
    ``duration_ms``. Request context (IP, user agent, request id, the logged-in user) fills whatever
    is not given.

    ``via_outbox=False``: a transactional event goes straight into ``audit_logs`` on PostgreSQL too, instead of the
    outbox (``outbox.py``). The audit package's own records use it: it reads them back as state right after they
    commit (the last verification, a stream's starting point, an erasure's manifest, an alert's last firing).
    """
    if not _enabled():
        return None
    fields.setdefault("timestamp", utcnow())
    fields.update(user_id=user_id, metadata=metadata, ip_address=ip_address, status=status)
    fields["user_agent_"] = user_agent
    if user_id is not None and "username" not in fields:
        fields["username"] = _username_for(user_id)
    event = _build(action_type, resource_type, resource_id, description, fields)
    if transactional:
        # If this insert fails, the caller's change cannot commit either: its transaction fails as a whole.
        # Pending changes first (as an ORM execute's autoflush would): the row may refer to them.
        db.session.flush()
        connection = db.session.connection()
        if via_outbox and outbox.in_use(connection):
            # PostgreSQL: into the outbox, in this same transaction; the writer moves it into audit_logs.
            outbox.add(connection, event)
            outbox.wake_on_commit(db.session(), current_app.extensions["audit_writer"])
        else:
            insert_events(connection, [event])
        if current_app.config.get("METRICS_ENABLED"):
            count_on_commit(db.session(), event)
        return event["event_id"]
    try:
        current_app.extensions["audit_writer"].submit(event)
    except Exception:  # noqa: BLE001
        log.exception("audit: could not queue event %s; spooling it for replay", event["event_id"])
        try:
            current_app.extensions["audit_writer"].spool.append([event])
        except Exception:  # noqa: BLE001 - nowhere left to keep it: say so loudly, never fail the caller
            log.critical("audit: event %s is lost: %r", event["event_id"], event, exc_info=True)
    return event["event_id"]


def _username_for(user_id: object) -> str | None:
    """The current name of user ``user_id`` (the logged-in user's without a query), or None."""
    try:
        actor_id, actor_name = current_actor()
        if actor_id is not None and actor_id == user_id:
            return actor_name
        return username_of(user_id)
    except Exception:  # noqa: BLE001 - a name is a nicety; the event is recorded without it
        return None


# -- helpers ---------------------------------------------------------------------------------


def log_login(user, *, transactional: bool = True, **fields) -> str | None:
    """A successful login, in the same transaction as ``last_login_at``."""
    return log_audit(
        user.id, ActionType.LOGIN, ResourceType.SESSION, user.id, f"{user.username} logged in",
        username=user.username, transactional=transactional, **fields,
    )


def log_login_failed(attempted_username: str, reason: str, user=None, **fields) -> str | None:
    """A failed login: names the attempted username (never the password); in its own transaction."""
    return log_audit(
        None, ActionType.LOGIN_FAILED, ResourceType.SESSION, user.id if user else None,
        f"Failed login for '{attempted_username}': {reason}",
        metadata={"attempted_username": attempted_username, "reason": reason, "known_user": user is not None},
        status=Status.FAILURE, **fields,
    )


def log_logout(user, **fields) -> str | None:
    return log_audit(
        user.id, ActionType.LOGOUT, ResourceType.SESSION, user.id, f"{user.username} logged out",
        username=user.username, **fields,
    )


def log_user_action(actor, action_type, target, description: str, metadata=None, **fields) -> str | None:
    """An action by ``actor`` on the user ``target`` (creation, update, status change, ...)."""
    return log_audit(
        actor.id if actor else None, action_type, ResourceType.USER, target.id, description, metadata,
        username=actor.username if actor else None, **fields,
    )


def log_admin_action(admin, action_type, resource_type, resource_id, description, metadata=None, **fields):
    """An administrative action; marks the metadata so admin actions can be told apart."""
    metadata = {**(metadata or {}), "admin_action": True}
    return log_audit(
        admin.id if admin else None, action_type, resource_type, resource_id, description, metadata,
        username=admin.username if admin else None, **fields,
    )


def log_error(exc: BaseException, description: str | None = None, *, action_type=None, **fields) -> str | None:
    """An error with its stack trace, severity (``record/exceptions.py``) and fingerprint. Never raises."""
    try:
        etype = error_type_name(exc)
        location = innermost_app_frame(exc)
        message = _safe_str(exc, 2000)
        fields.setdefault("severity", severity_for(exc))
        fields.setdefault("stack_trace", format_stack(exc))
        metadata = {"message": message, "location": location, **(fields.pop("metadata", None) or {})}
        return log_audit(
            fields.pop("user_id", None), action_type or ActionType.ERROR_OCCURRED,
            fields.pop("resource_type", ResourceType.SYSTEM), fields.pop("resource_id", None),
            description or f"{etype}: {message[:300]}", metadata, status=Status.ERROR,
            error_type=etype, fingerprint=fingerprint(etype, location), **fields,
        )
    except Exception:  # noqa: BLE001
        log.exception("audit: could not record an error event")
        return None


def log_permission_denied(user, path: str, **fields) -> str | None:
    """A logged-in user was refused (403); the event carries the method and path."""
    if has_request_context():
        fields.setdefault("http_method", request.method)
    return log_audit(
        user.id, ActionType.PERMISSION_DENIED, ResourceType.REQUEST, None,
        f"{user.username} was refused access to {path}", status=Status.FAILURE,
        username=user.username, path=path, **fields,
    )


def log_export(count: int, fmt: str, filters: dict, channel: str) -> str | None:
    """An export of ``count`` events matching ``filters`` (their active values) as ``fmt``, through ``channel``
    (``api``, ``ui`` or ``cli``); sensitive."""
    return log_audit(None, ActionType.EXPORT, ResourceType.AUDIT_LOG, None,
                     f"Exported {count:,} audit events as {fmt.upper()} ({channel})",
                     {"format": fmt, "filters": filters, "row_count": count, "channel": channel},
                     is_sensitive=True)


# -- decorator -------------------------------------------------------------------------------


def audit_log(action_type, resource_type, *, description: str | None = None, resource_id_arg: str | None = None,
              sensitive: bool = False):
    """Record a call of the decorated function: its name, its (redacted) arguments, the user from
    the request context, and SUCCESS, or FAILURE with the error, depending on whether it raised."""

    def decorate(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                bound = signature.bind_partial(*args, **kwargs)
                params = {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
            except TypeError:
                params = {}
            resource_id = params.get(resource_id_arg) if resource_id_arg else None
            text = description or f"Called {func.__qualname__}"
            metadata = {"function": f"{func.__module__}.{func.__qualname__}", "params": params}
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                _quietly(action_type, resource_type, resource_id, f"{text} (failed: {type(exc).__name__})",
                         {**metadata, "error": error_type_name(exc)}, Status.FAILURE, sensitive,
                         error_type=error_type_name(exc))
                raise
            _quietly(action_type, resource_type, resource_id, text, metadata, Status.SUCCESS, sensitive)
            return result

        return wrapper

    return decorate


def _quietly(action_type, resource_type, resource_id, text, metadata, status, sensitive, **fields):
    try:
        log_audit(None, action_type, resource_type, resource_id, text, metadata, status=status,
                  is_sensitive=sensitive, **fields)
    except Exception:  # noqa: BLE001
        log.exception("audit: the @audit_log decorator could not record %s", action_type)
