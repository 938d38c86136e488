"""Helpers for the tamper-evidence, retention and append-only tests: record events through the app, read
the chain, and act as an attacker with database superuser rights (raw SQL that bypasses the app and, on
PostgreSQL, the append-only triggers)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select, text, update

from audit_portal.audit.integrity import checkpoints
from audit_portal.audit.integrity import seal as chain_seal
from audit_portal.audit.integrity import verify as chain_verify
from audit_portal.audit.record import partitions
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditChainLink, AuditLog
from audit_portal.audit.write.service import log_audit
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

LOGS = AuditLog.__table__
CHAIN = AuditChainLink.__table__


def record_events(app, count: int, *, days_ago: float | None = None, user_id: int | None = None,
                  label: str = "setting") -> list[int]:
    """Record ``count`` events the way a domain service does (committed with their change); return their ids."""
    with app.app_context():
        event_ids = []
        for i in range(count):
            fields = {}
            if days_ago is not None:
                fields["timestamp"] = utcnow() - timedelta(days=days_ago, seconds=count - i)
            event_ids.append(log_audit(user_id, ActionType.UPDATE, ResourceType.SETTING, f"{label}-{i}",
                                       f"Changed {label} {i}", {"old": i, "new": i + 1}, transactional=True,
                                       **fields))
            db.session.commit()
        assert app.extensions["audit_writer"].flush()  # on PostgreSQL they wait in the outbox until the writer moves them
        ids = list(db.session.scalars(select(AuditLog.id).where(AuditLog.event_id.in_(event_ids))
                                      .order_by(AuditLog.id)))
        db.session.remove()
        return ids


def insert_event(app, *, id: int, description: str = "Inserted by hand", days_ago: float = 0) -> None:
    """Insert a well-formed event with an explicit id through the app's own connection."""
    event = build_event(ActionType.UPDATE, ResourceType.SETTING, "x", description,
                        timestamp=utcnow() - timedelta(days=days_ago))
    with app.app_context(), db.engine.begin() as conn:
        partitions.ensure_for_events(conn, [event])  # its month, on PostgreSQL
        conn.execute(insert(LOGS).values(id=id, **event))


def bump_id_sequence(app, to: int) -> None:
    """After an explicit id, make PostgreSQL's sequence continue above it (SQLite does so by itself)."""
    with app.app_context(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('audit_logs', 'id'), :v)"), {"v": to})


def seal(app):
    with app.app_context():
        result = chain_seal.seal()
        db.session.remove()
        return result


def verify(app) -> chain_verify.VerifyResult:
    with app.app_context():
        result = chain_verify.verify()
        db.session.remove()
        return result


def checkpoint(app) -> dict:
    with app.app_context():
        return checkpoints.maybe_checkpoint(force=True)


def links(app) -> list:
    """The chain, in order: rows of every ``audit_chain`` column."""
    with app.app_context(), db.engine.connect() as conn:
        return list(conn.execute(select(CHAIN).order_by(CHAIN.c.seq)))


def count_rows(app, table=LOGS, *where) -> int:
    with app.app_context(), db.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table).where(*where))


def row(app, audit_id: int) -> dict:
    with app.app_context(), db.engine.connect() as conn:
        return dict(conn.execute(select(LOGS).where(LOGS.c.id == audit_id)).one()._mapping)


def tamper(app, *statements) -> None:
    """Run SQL statements (strings or SQLAlchemy statements) as an attacker with superuser rights, in one
    transaction. On PostgreSQL, ``session_replication_role = replica`` switches the append-only triggers off."""
    with app.app_context(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            conn.execute(text(statement) if isinstance(statement, str) else statement)


def recompute_chain(app, key: str, rewrite=None) -> None:
    """Recompute every link with ``key`` (what an attacker without the real key can do), after applying
    ``rewrite`` (a list of statements) to the rows."""
    statements = list(rewrite or [])
    tamper(app, *statements)
    real_key = app.config["AUDIT_HMAC_KEY"]
    app.config["AUDIT_HMAC_KEY"] = key
    try:
        with app.app_context(), db.engine.connect() as conn:
            joined = conn.execute(select(CHAIN.c.seq, CHAIN.c.user_id.label("sealed_user"),
                                         CHAIN.c.salts.label("link_salts"), LOGS)
                                  .join(LOGS, LOGS.c.id == CHAIN.c.audit_log_id).order_by(CHAIN.c.seq)).all()
            prev = (chain_seal.GENESIS, chain_seal.GENESIS)
            new_links = []
            for r in joined:
                link = chain_seal.new_link(r.seq, prev, r, r.sealed_user, key.encode(), salts=r.link_salts)
                new_links.append(link)
                prev = link["link_hash"], link["public_hash"]
    finally:
        app.config["AUDIT_HMAC_KEY"] = real_key
    tamper(app, *[update(CHAIN).where(CHAIN.c.seq == link["seq"]).values(
        prev_hash=link["prev_hash"], link_hash=link["link_hash"], public_hash=link["public_hash"],
        row_hash=link["row_hash"]) for link in new_links])
