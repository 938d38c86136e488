"""The database: engine options per backend, binding Flask-SQLAlchemy and Flask-Migrate, SQLite's pragmas,
and releasing a request's session even when the connection is gone."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re

from flask import Flask
from sqlalchemy import create_engine, event
from sqlalchemy.pool import NullPool

from .config import PROJECT_ROOT
from .extensions import db, migrate

log = logging.getLogger(__name__)

#: Seconds a new PostgreSQL connection may take (libpq ``connect_timeout``). Without it a database host that
#: stops answering (a black-holed connection) would hold a request until the worker is killed, not a 503.
POSTGRES_CONNECT_TIMEOUT_S = 5


def init_app(app: Flask) -> None:
    """Point the app at its database (``DATABASE_URL``, else a SQLite file in the instance folder) and bind
    Flask-SQLAlchemy and Flask-Migrate to it."""
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        url = app.config["DATABASE_URL"] or "sqlite:///" + os.path.join(app.instance_path, "audit_portal.db")
        app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(url)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    db.init_app(app)
    # Registered after Flask-SQLAlchemy's own teardown, so it runs first (teardowns run in reverse order).
    app.teardown_appcontext(release_session)
    configure_sqlite(app)
    configure_postgresql(app)
    migrate.init_app(app, db, directory=os.path.join(PROJECT_ROOT, "migrations"), render_as_batch=True,
                     include_object=include_object)


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


def release_session(exc: BaseException | None = None) -> None:
    """End the request's database session without ever raising. When the connection was lost during the
    request (a database outage), the rollback that closing the session does cannot reach the server and
    raises; left alone, that error would escape from the teardown and turn the request's answer (a 503
    page) into a 500. The session is then closed by invalidating its connection (the pool replaces it)."""
    try:
        db.session.remove()
    except Exception:  # noqa: BLE001 - the connection is gone: nothing to roll back on the server
        log.warning("database connection lost during the request; its session is discarded")
        with contextlib.suppress(Exception):
            db.session.invalidate()
        db.session.registry.clear()


def configure_postgresql(app: Flask) -> None:
    """PostgreSQL: name every connection after the process that opened it (``name_connections``)."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return
    with app.app_context():
        name_connections(db.engine)


def name_connections(engine) -> None:
    """Give each new connection of ``engine`` the ``application_name`` ``audit_portal:<pid>`` (unless the URL sets
    one), read when it connects, so after a fork too: ``pg_stat_activity`` then tells which process of which server
    holds a background job's lock (``audit/delivery/locks.py``) or runs a query."""
    event.listen(engine, "do_connect", _name_connection)


def _name_connection(dialect, connection_record, cargs, cparams) -> None:
    cparams.setdefault("application_name", f"audit_portal:{os.getpid()}")


def unpooled_engine(app: Flask):
    """PostgreSQL: an engine of the app's database without a pool, for connections that hold a session-level lock
    for as long as a job runs (one each, closed with the lock, never lent to requests); None on SQLite."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return None
        url = db.engine.url
    connect_args = app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {})
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    name_connections(engine)
    return engine


def configure_sqlite(app: Flask) -> None:
    """SQLite: enforce foreign keys (ON DELETE SET NULL relies on it) and let readers and the
    background writer work side by side (WAL)."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # The search language's IP ranges (ip:10.0.0.0/8): PostgreSQL compares inet; SQLite asks Python.
        dbapi_connection.create_function("audit_ip_in_network", 2, ip_in_network, deterministic=True)


def ip_in_network(address: str | None, network: str) -> int:
    """1 when ``address`` lies in ``network`` (a CIDR range), else 0 (also for no address or a malformed one)."""
    if not address:
        return 0
    try:
        return int(ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False))
    except ValueError:
        return 0


_PARTITION = re.compile(r"^audit_logs_(purged_)?\d{4}_\d{2}$")


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic autogenerate: ignore indexes that only migrations create (models list them in the metadata's
    ``info["database_only_indexes"]``), and the unique event id, whose columns differ by database (on
    PostgreSQL it holds the partition key: ``models.PARTITION_KEY``)."""
    if type_ == "unique_constraint" and name == "uq_audit_logs_event_id":
        return False
    # PostgreSQL's monthly partitions of audit_logs (and their indexes) are made at run time, not by models.
    table = obj if type_ == "table" else getattr(obj, "table", None)
    if reflected and table is not None and _PARTITION.match(table.name or ""):
        return False
    return not (type_ == "index" and name in db.metadata.info.get("database_only_indexes", ()))


def escape_like(text: str) -> str:
    """Make ``%``, ``_`` and ``\\`` match themselves in a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
