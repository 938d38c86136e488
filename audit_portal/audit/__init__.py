"""The audit log, as a Flask extension: ``init_app(app)`` wires it in, and this module is its public face.

Application code records events through the names below (the audit package is arranged by role inside:
``record`` what an event is, ``write`` getting events in, ``read`` getting them out, ``integrity`` the hash chain
and retention, ``web`` the pages and the API, ``demo`` synthetic data, ``cli`` the commands)::

    from audit_portal.audit import ActionType, ResourceType, log_audit

    log_audit(user.id, ActionType.UPDATE, ResourceType.SETTING, "theme", "Changed the theme",
              metadata={"old": "light", "new": "dark"})

The names are loaded when first used, so importing one sub-module (an enum, a model) loads nothing else.
"""

from __future__ import annotations

import importlib

#: Public name -> the module (below this package) that defines it.
_FACE = {
    **dict.fromkeys(("ActionType", "Category", "ErrorSeverity", "ResourceType", "Status"), "record.enums"),
    "single_line": "record.events",
    "use_actor_directory": "record.actors",
    **dict.fromkeys(("log_audit", "log_login", "log_login_failed", "log_logout", "log_user_action", "log_admin_action",
                     "log_error", "log_permission_denied", "log_export", "audit_log"), "write.service"),
    **dict.fromkeys(("client_ip", "remember_actor"), "write.context"),
    "close_all_writers": "write.exit",
    "AuditLogRepository": "read.query",
}

def __getattr__(name: str):
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_FACE])


def init_app(app) -> None:
    """Wire auditing into ``app``: the background writer (its housekeeping: the sealer and the months ahead, each
    done by one process at a time; the thread started by the first request of each process) and its SIGTERM flush,
    the request hooks, the pages, the API, the commands, the template filters, and the stream dispatcher and alert
    evaluator threads (started by the first request of each process, unless STREAM_DISPATCH_IN_APP or
    ALERT_EVAL_IN_APP is false), and with METRICS_ENABLED the collector that /metrics reads the trail's state with."""
    from ..metrics import add_collector
    from ..rest import register
    from .alerts.runner import BackgroundEvaluator, check_settings
    from .cli import alerts_cli, audit_cli, demo_cli, streams_cli
    from .integrity import models as _integrity_models  # noqa: F401 - its tables, for create_all and Alembic
    from .integrity.housekeeping import Housekeeping
    from .integrity.retention import check_settings as check_retention
    from .record.presentation import TEMPLATE_FILTERS
    from .streams.runner import BackgroundDispatcher
    from .web import (
        alerts,
        alerts_api,
        api,
        digests_api,
        erasure_api,
        erasures,  # noqa: F401 - adds the integrity page's erasure buttons to views.bp
        holds,  # noqa: F401 - adds the integrity page's hold forms to views.bp
        holds_api,
        integrity,  # noqa: F401 - adds the integrity page's routes to views.bp
        metrics,
        saved_views,
        saved_views_api,
        streams,
        streams_api,
        views,
    )
    from .write.exit import install_sigterm_flush
    from .write.hooks import AuditMiddleware
    from .write.writer import AuditWriter

    # The housekeeping's turn: the sealer's interval, or without a sealer, the partition maintenance's.
    every = app.config["AUDIT_SEAL_INTERVAL"] or app.config["AUDIT_PARTITION_CHECK_SECONDS"]
    writer = app.extensions["audit_writer"] = AuditWriter(app, housekeeping=Housekeeping(app),
                                                          housekeeping_every=every)
    if every:
        app.before_request(writer.start)
    install_sigterm_flush()
    AuditMiddleware(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(streams.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(saved_views.bp)
    register(api.blp, digests_api.blp, erasure_api.blp, holds_api.blp, streams_api.blp, alerts_api.blp,
             alerts_api.rules_blp, saved_views_api.blp)
    for group in (audit_cli, demo_cli, streams_cli, alerts_cli):
        app.cli.add_command(group)
    for name, function in TEMPLATE_FILTERS.items():
        app.add_template_filter(function, name)
    app.context_processor(alerts.nav_counts)
    if app.config["METRICS_ENABLED"]:
        add_collector(app, metrics.AuditCollector(app))
    if app.config["STREAM_DISPATCH_IN_APP"]:
        dispatcher = app.extensions["audit_streams"] = BackgroundDispatcher(app)
        app.before_request(dispatcher.ensure_started)
    check_settings(app.config)
    check_retention(app.config)
    if app.config["ALERT_EVAL_IN_APP"]:
        evaluator = app.extensions["audit_alerts"] = BackgroundEvaluator(app)
        app.before_request(evaluator.ensure_started)


__all__ = sorted([*_FACE, "init_app"])
