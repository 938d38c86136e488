"""audit_portal: a Flask application that keeps a trustworthy audit trail and lets admins read it."""

from __future__ import annotations

import contextlib
import logging
import os

from flask import Flask

from .config import ConfigError, check_production, settings_from

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(config: dict | None = None) -> Flask:
    """Build the application. ``config`` overrides settings (tests use it)."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=os.path.join(_ROOT, "templates"),
        static_folder=os.path.join(_ROOT, "static"),
    )
    configure(app, config or {})
    configure_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_hooks(app)
    register_commands(app)
    register_template_filters(app)
    return app


def configure(app: Flask, overrides: dict) -> None:
    app_env = overrides.get("APP_ENV") or os.environ.get("APP_ENV", "development")
    settings = settings_from(app_env)
    settings.update(overrides)
    check_production(settings)
    app.config.from_mapping(settings)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        url = app.config["DATABASE_URL"] or "sqlite:///" + os.path.join(app.instance_path, "audit_portal.db")
        app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(url)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    app.config["AUDIT_DATA_DIR"] = app.config["AUDIT_DATA_DIR"] or app.instance_path


#: Seconds a new PostgreSQL connection may take (libpq ``connect_timeout``). Without it a database host that
#: stops answering (a black-holed connection) would hold a request until the worker is killed, not a 503.
POSTGRES_CONNECT_TIMEOUT_S = 5


def engine_options(url: str) -> dict:
    """Engine options per backend. SQLite waits for a lock instead of failing at once. PostgreSQL checks a
    pooled connection before handing it out (``pool_pre_ping``: after an outage or a server restart the dead
    connections are replaced, not used) and bounds the time a new connection may take (unless the URL
    sets ``connect_timeout`` itself)."""
    # hide_parameters: a database error's message never carries the statement's values (a password hash,
    # say), so an error event built from it cannot store them.
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}, "hide_parameters": True}
    options: dict = {"pool_pre_ping": True, "hide_parameters": True}
    if "connect_timeout=" not in url:
        options["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    return options


def normalise_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg2 here (SQLAlchemy 2.1 would pick psycopg 3)."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


def configure_logging(app: Flask) -> None:
    if app.testing:
        return
    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def register_extensions(app: Flask) -> None:
    from .audit.writer import AuditWriter, install_sigterm_flush
    from .database import configure_sqlite, include_object
    from .extensions import csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    # Registered after Flask-SQLAlchemy's own teardown, so it runs first (teardowns run in reverse order).
    app.teardown_appcontext(release_session)
    configure_sqlite(app)
    migrate.init_app(app, db, directory=os.path.join(_ROOT, "migrations"), render_as_batch=True,
                    include_object=include_object)
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    app.extensions["audit_writer"] = AuditWriter(app)
    install_sigterm_flush()


def release_session(exc: BaseException | None = None) -> None:
    """End the request's database session without ever raising. When the connection was lost during the
    request (a database outage), the rollback that closing the session does cannot reach the server and
    raises; left alone, that error would escape from the teardown and turn the request's answer (a 503
    page) into a 500. The session is then closed by invalidating its connection (the pool replaces it)."""
    from .extensions import db

    try:
        db.session.remove()
    except Exception:  # noqa: BLE001 - the connection is gone: nothing to roll back on the server
        logging.getLogger(__name__).warning("database connection lost during the request; its session is discarded")
        with contextlib.suppress(Exception):
            db.session.invalidate()
        db.session.registry.clear()


def register_blueprints(app: Flask) -> None:
    from . import audit, auth, health, users
    from .main import bp as main_bp
    from .rest import register_api

    app.register_blueprint(health.bp)
    app.register_blueprint(main_bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(audit.bp)
    register_api(app)


def register_errorhandlers(app: Flask) -> None:
    from .errors import register_errorhandlers as register

    register(app)


def register_hooks(app: Flask) -> None:
    from .audit.hooks import AuditMiddleware
    from .security import SecurityHeaders

    AuditMiddleware(app)
    SecurityHeaders(app)


def register_commands(app: Flask) -> None:
    from .audit import chain_cli, export_cli  # noqa: F401  (add ``audit verify/purge/export`` to the group)
    from .audit.cli import audit_cli, demo_cli
    from .auth.cli import tokens_cli
    from .users.cli import users_cli

    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(audit_cli)


def register_template_filters(app: Flask) -> None:
    from .templating import register_template_filters as register

    register(app)


__all__ = ["create_app", "ConfigError"]
