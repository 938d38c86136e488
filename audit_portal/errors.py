"""Error responses: the one place that decides JSON (under /api/ and /healthz) or HTML (everywhere else)."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .audit import ActionType, log_error, log_permission_denied, single_line
from .extensions import db, login_manager

log = logging.getLogger(__name__)
#: Seconds a client is told to wait (``Retry-After``) when the database is unavailable.
DATABASE_RETRY_AFTER_S = 5


def wants_json() -> bool:
    path = request.path
    return (path == "/api" or path.startswith("/api/")) and not path.startswith("/api/docs") or path == "/healthz"


def _validation_errors(exc: HTTPException) -> dict:
    """Flatten webargs' ``{location: {field: [messages]}}`` into ``{field: [messages]}``."""
    messages = (getattr(exc, "data", None) or {}).get("messages") or {}
    flat: dict = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            for field, msgs in fields.items():
                flat[field] = msgs if isinstance(msgs, list) else [msgs]
        else:
            flat[location] = fields if isinstance(fields, list) else [fields]
    return flat


def _message(exc: HTTPException, errors: dict) -> str:
    if errors:
        parts = []
        for field, msgs in errors.items():
            text = "; ".join(str(m) for m in msgs) if isinstance(msgs, list) else str(msgs)
            parts.append(f"{field}: {text}")
        return "Invalid request: " + " | ".join(parts)
    return exc.description or exc.name


def render_error(exc: HTTPException, *, without_database: bool = False):
    """The error response for ``exc``: the JSON envelope or the HTML error page, with its headers
    (``Allow`` on a 405, ``Retry-After`` on a 429). ``without_database``: the page is rendered for an
    anonymous visitor, because finding out who is logged in needs the database that just failed."""
    code = exc.code or 500
    errors = _validation_errors(exc)
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    if wants_json():
        body = {"success": False, "message": _message(exc, errors), "code": code, "status": exc.name,
                "errors": errors}
        return jsonify(body), code, headers
    context = {}
    if without_database:
        context["current_user"] = login_manager.anonymous_user()
        _no_user_lookup()
    return render_template("errors/error.html", error=exc, code=code, errors=errors, **context), code, headers


def _no_user_lookup() -> None:
    """With the database down, stop Flask-Login from looking the user up (a query) again and again for the
    rest of this request (the error event, the template context, the request event): unless it was
    already loaded, the user is unknown. Each attempt could cost a whole connect timeout."""
    g.setdefault("_login_user", login_manager.anonymous_user())


def handle_http_exception(exc: HTTPException):
    """Every HTTP error keeps its status; a 403 for a logged-in user is recorded as PERMISSION_DENIED."""
    if exc.code == 403 and current_user and current_user.is_authenticated:
        log_permission_denied(current_user, request.path)
    return render_error(exc)


def handle_csrf_error(exc: CSRFError):
    exc.description = f"The form's security token is missing or wrong ({exc.description}). Reload the page and try again."
    return render_error(exc)


def handle_exception(exc: Exception):
    """An unhandled exception: record it (stack trace, severity, fingerprint), then answer 500 (503 when
    the database is unreachable). Recording never stands between the user and the error page."""
    down = _is_database_down(exc)
    where = f"{request.method} {single_line(request.path, 300)}"  # escaped: a path cannot forge a log line
    if down:
        _no_user_lookup()
        # One line per request, not a traceback each: during an outage every request fails the same way
        # (the stack trace is in the recorded event).
        log.error("database unavailable on %s: %s", where, single_line(str(exc).split("\n", 1)[0], 300))
    else:
        log.exception("unhandled exception on %s", where)
    log_error(exc, action_type=ActionType.EXCEPTION_RAISED, http_method=request.method, path=request.path,
              status_code=503 if down else 500)
    if down:
        return render_error(ServiceUnavailable("The database is unavailable. Try again in a moment.",
                                               retry_after=DATABASE_RETRY_AFTER_S), without_database=True)
    return render_error(InternalServerError("An unexpected error occurred; it has been recorded."))


#: Errors that mean the database could not be reached (or the connection to it was lost).
_UNREACHABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)


def _is_database_down(exc: Exception) -> bool:
    if isinstance(exc, _UNREACHABLE) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated):
        return True
    if isinstance(exc, sa_exc.SQLAlchemyError):
        # Another error that a lost connection can cause indirectly, e.g. PendingRollbackError when
        # something earlier in the request caught the disconnect: ask the database itself.
        return not _database_answers()
    return False


def _database_answers() -> bool:
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means it does not
        return False
    return True


def init_app(app: Flask) -> None:
    # Registered after flask-smorest's own HTTPException handler, so this one wins for every path.
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_exception)
