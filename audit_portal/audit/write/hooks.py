"""Request hooks: one REQUEST event per significant HTTP request, written off the request path."""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app, g, request

from ...timeutil import utcnow
from ..record.enums import ActionType, ResourceType, Status
from ..record.redaction import redact_query_string
from .context import REQUEST_ID_HEADER, request_id
from .service import log_audit

log = logging.getLogger(__name__)


def _csv(value) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return tuple(part.strip() for part in str(value or "").split(",") if part.strip())


def leave_request_unrecorded() -> None:
    """Do not record the current request as a REQUEST event (a live tail's polls: their start is recorded)."""
    g.audit_request_recorded = True


class AuditMiddleware:
    """Installs ``before_request``/``after_request``/``teardown_request`` hooks on an app.

    What counts as significant comes from settings: ``AUDIT_REQUEST_METHODS`` (state-changing
    methods by default), ``AUDIT_REQUEST_INCLUDE_PREFIXES`` (paths recorded for every method: login,
    admin pages, the audit API) and ``AUDIT_REQUEST_EXCLUDE_PREFIXES`` (never recorded: health
    checks, static files, API docs).
    """

    def __init__(self, app: Flask | None = None):
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        self.methods = {m.upper() for m in _csv(app.config["AUDIT_REQUEST_METHODS"])}
        self.include = _csv(app.config["AUDIT_REQUEST_INCLUDE_PREFIXES"])
        self.exclude = _csv(app.config["AUDIT_REQUEST_EXCLUDE_PREFIXES"])
        app.extensions["audit_middleware"] = self
        app.before_request(self._start)
        app.after_request(self._finish)
        app.teardown_request(self._teardown)

    def is_significant(self, method: str, path: str) -> bool:
        if path.startswith(self.exclude):
            return False
        return method.upper() in self.methods or path.startswith(self.include)

    def _start(self) -> None:
        store = g._get_current_object()
        store.audit_started = time.perf_counter()
        store.audit_timestamp = utcnow()
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        # Accept a request id only when the operator says the proxy in front sets it (most proxies pass a
        # client's header through, and a client could file its events under another request's id), and
        # only when it looks like one (bounded, no control characters).
        if (incoming and current_app.config.get("AUDIT_TRUST_REQUEST_ID") and 8 <= len(incoming) <= 36
                and incoming.replace("-", "").isalnum() and incoming.isascii()):
            store.audit_request_id = incoming
        else:
            request_id()

    def _finish(self, response):
        if g.get("audit_request_id"):
            response.headers[REQUEST_ID_HEADER] = g.audit_request_id
        self._record(response.status_code)
        return response

    def _teardown(self, exc) -> None:
        # after_request does not run when a response could not be built at all.
        if exc is not None and not g.get("audit_request_recorded"):
            self._record(500)

    def _record(self, status_code: int) -> None:
        # Runs for every request: the request, ``g`` and the app are looked up once, not through their proxies
        # at every use.
        store, app = g._get_current_object(), current_app._get_current_object()
        if store.get("audit_request_recorded") or not app.config["AUDIT_ENABLED"]:
            return
        store.audit_request_recorded = True
        try:
            req = request._get_current_object()
            method, path = req.method, req.path
            if not self.is_significant(method, path):
                return
            started = store.get("audit_started")
            duration = int((time.perf_counter() - started) * 1000) if started else None
            query = redact_query_string(req.query_string)
            status = Status.SUCCESS if status_code < 400 else Status.FAILURE if status_code < 500 else Status.ERROR
            log_audit(
                None, ActionType.REQUEST, ResourceType.REQUEST, None,
                f"{method} {path} answered {status_code}",
                status=status, http_method=method, path=f"{path}?{query}" if query else path,
                status_code=status_code, duration_ms=duration, timestamp=store.get("audit_timestamp") or utcnow(),
            )
        except Exception:  # noqa: BLE001 - auditing never fails a request
            log.exception("audit: could not record the request event")
