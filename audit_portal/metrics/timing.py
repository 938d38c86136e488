"""``http_request_duration_seconds``: how long each request took, by route and method.

The labels stay few whatever clients send: the route's rule (``/admin/audit-logs/<int:event_id>``, never the
path itself), ``<unmatched>`` for every path no route matches (404s, and 405s), and the method, or ``OTHER`` for
one outside the standard set.
"""

from __future__ import annotations

import time

from flask import Flask, g, request

from .families import HTTP_REQUEST_DURATION

UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _finish(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        rule = request.url_rule
        method = request.method
        HTTP_REQUEST_DURATION.labels(rule.rule if rule is not None else UNMATCHED,
                                     method if method in METHODS else "OTHER").observe(time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    """Time every request. Registered before the other features' hooks: its ``before_request`` runs first and
    its ``after_request`` last, so the figure covers theirs too (CSRF, auditing, security headers)."""
    app.before_request(_start)
    app.after_request(_finish)
