"""Prometheus metrics at ``/metrics`` (docs/metrics.md): off unless METRICS_ENABLED.

This package knows no feature: features update its families (``families``) and lend it the collectors that read
their state at scrape time (``add_collector``; the audit package lends one for the seal lag, the spool, streams,
alerts and the last verification).
"""

from __future__ import annotations

from ..config import ConfigError

#: The shortest METRICS_TOKEN accepted.
MIN_TOKEN = 16


def check_settings(config) -> None:
    """Refuse a token too short to keep a scraper's secret."""
    token = config["METRICS_TOKEN"]
    if token and len(token) < MIN_TOKEN:
        raise ConfigError(f"METRICS_TOKEN must be a random string of at least {MIN_TOKEN} characters (or empty: "
                          "then /metrics answers on loopback only), e.g. "
                          "METRICS_TOKEN=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\"")


def add_collector(app, collector) -> None:
    """Have every scrape of ``app`` include ``collector`` (an object with ``collect()``, run at scrape time)."""
    app.extensions.setdefault("metrics_collectors", []).append(collector)


def init_app(app) -> None:
    """With METRICS_ENABLED: the /metrics route, request timing, and counting domain events as they commit.
    Without it nothing is registered (/metrics is a 404) and the families are never updated."""
    check_settings(app.config)
    if not app.config["METRICS_ENABLED"]:
        return
    from . import families, timing, views

    timing.init_app(app)
    families.count_domain_events()
    app.register_blueprint(views.bp)


__all__ = ["MIN_TOKEN", "add_collector", "check_settings", "init_app"]
