"""Database set-up that depends on the backend."""

from flask import Flask
from sqlalchemy import event

from .extensions import db


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


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic autogenerate: ignore indexes that only migrations create (see ``DATABASE_ONLY_INDEXES``)."""
    from .audit.models import DATABASE_ONLY_INDEXES

    return not (type_ == "index" and name in DATABASE_ONLY_INDEXES)


def escape_like(text: str) -> str:
    """Make ``%``, ``_`` and ``\\`` match themselves in a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
