"""audit_portal: a Flask application that keeps a trustworthy audit trail and lets admins read it."""

from __future__ import annotations

import logging
import os

from flask import Flask

from .config import PROJECT_ROOT, ConfigError, configure


def create_app(config: dict | None = None) -> Flask:
    """Build the application. ``config`` overrides settings (tests use it)."""
    # The features are imported here, not at the top: importing any one module of the package (an enum, a
    # model) then loads no views, and the package has no import cycles.
    from . import audit, auth, database, errors, extensions, health, main, metrics, replica, rest, security, templating, users

    app = Flask(__name__, instance_relative_config=True, template_folder=os.path.join(PROJECT_ROOT, "templates"),
                static_folder=os.path.join(PROJECT_ROOT, "static"))
    configure(app, config or {})
    configure_logging(app)
    metrics.init_app(app)  # first: its request timing wraps every other feature's hooks
    database.init_app(app)
    replica.init_app(app)  # with DATABASE_REPLICA_URL: the read layer's lists may come from a replica
    extensions.init_app(app)
    rest.init_app(app)
    health.init_app(app)
    main.init_app(app)
    auth.init_app(app)
    audit.init_app(app)  # before users: its API section comes first in the OpenAPI document
    users.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    templating.init_app(app)
    return app


def configure_logging(app: Flask) -> None:
    if app.testing:
        return
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


__all__ = ["create_app", "ConfigError"]
