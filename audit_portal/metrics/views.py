"""``GET /metrics``: the Prometheus exposition, for a scraper that holds the token (or, without one, on loopback).

One registry is built per scrape: the families of every process (``MultiProcessCollector`` over
``PROMETHEUS_MULTIPROC_DIR`` under gunicorn, else this process's default registry), plus the collectors that
features registered (``add_collector``), which read the database and the spool at scrape time, once, in the
process that answers.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from .families import MULTIPROCESS

bp = Blueprint("metrics", __name__)

#: Headers a reverse proxy adds: without a token, a proxied request is refused even when the proxy is on loopback.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


class _Families:
    """This process's families (the default registry: also the process_* and python_* collectors)."""

    @staticmethod
    def collect():
        return REGISTRY.collect()


def scrape_registry(collectors) -> CollectorRegistry:
    """A registry for one scrape: every process's families, then ``collectors``."""
    registry = CollectorRegistry()
    if MULTIPROCESS:
        MultiProcessCollector(registry)
    else:
        registry.register(_Families())
    for collector in collectors:
        registry.register(collector)
    return registry


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


def refusal():
    """The answer for a scraper that may not read the metrics, or None when it may."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return ("A bearer token is required: Authorization: Bearer <METRICS_TOKEN>\n", 401,
                {"Content-Type": "text/plain; charset=utf-8", "WWW-Authenticate": 'Bearer realm="metrics"'})
    if _loopback(request.remote_addr) and not any(name in request.headers for name in FORWARDING_HEADERS):
        return None
    return ("Without METRICS_TOKEN the metrics are served on loopback only (docs/metrics.md)\n", 403,
            {"Content-Type": "text/plain; charset=utf-8"})


@bp.get("/metrics")
def metrics():
    refused = refusal()
    if refused is not None:
        return refused
    encoder, content_type = choose_encoder(request.headers.get("Accept"))
    registry = scrape_registry(current_app.extensions.get("metrics_collectors", ()))
    return encoder(registry), 200, {"Content-Type": content_type}
