"""Error responses: the one place that decides JSON (under /api/ and /healthz) or HTML (everywhere else)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .audit.enums import ActionType
from .audit.service import log_error, log_permission_denied

log = logging.getLogger(__name__)


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


def render_error(exc: HTTPException):
    """The error response for ``exc``: the JSON envelope or the HTML error page, with its headers
    (``Allow`` on a 405, ``Retry-After`` on a 429)."""
    code = exc.code or 500
    errors = _validation_errors(exc)
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    if wants_json():
        body = {"success": False, "message": _message(exc, errors), "code": code, "status": exc.name,
                "errors": errors}
        return jsonify(body), code, headers
    return render_template("errors/error.html", error=exc, code=code, errors=errors), code, headers


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
    log.exception("unhandled exception on %s %s", request.method, request.path)
    log_error(exc, action_type=ActionType.EXCEPTION_RAISED, http_method=request.method, path=request.path,
              status_code=503 if _is_database_down(exc) else 500)
    if _is_database_down(exc):
        return render_error(ServiceUnavailable("The database is unavailable. Try again in a moment."))
    return render_error(InternalServerError("An unexpected error occurred; it has been recorded."))


def _is_database_down(exc: Exception) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def register_errorhandlers(app: Flask) -> None:
    # Registered after flask-smorest's own HTTPException handler, so this one wins for every path.
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_exception)
