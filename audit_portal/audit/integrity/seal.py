"""Tamper evidence: two hash chains over committed audit rows, sealed in the background.

Each committed audit row gets one link in ``audit_chain``, in both chains (``canonical.py`` defines what they
cover): the keyed one (HMAC with ``AUDIT_HMAC_KEY``) and the public one (plain SHA-256, whose head the sealer
process signs: ``digests.py``); the personal fields enter as salted commitments, their salts kept in the link.
Sealing runs outside the request path (the background writer, ``flask audit verify``, ``flask audit purge``,
``flask audit sealer``), never updates an audit row, and is safe with several processes: links have a unique
position and a unique row, and PostgreSQL sealers take an advisory lock. Periodic checkpoints of the chain head
(``checkpoints.py``) let ``verify.py`` detect a truncated tail or a chain recomputed without the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...timeutil import utcnow
from ..delivery.locks import SEALER
from ..record.enums import ActionType
from ..record.models import AuditChainLink, AuditLog
from ..write.inserts import insert_links
from ..write.outbox import move_committed
from . import canonical as form
from .canonical import GENESIS
from .checkpoints import maybe_checkpoint

log = logging.getLogger(__name__)

SEAL_BATCH = 2000
#: How far below the highest sealed id the sealer looks for rows that committed late.
LATE_WINDOW = 20_000
#: One key (a bigint): serialises every seal pass, whichever process runs it (``delivery/locks.py``).
_ADVISORY_LOCK = SEALER
_table = AuditLog.__table__
_chain = AuditChainLink.__table__


def _key() -> bytes:
    return current_app.config["AUDIT_HMAC_KEY"].encode()


def new_link(seq: int, prev: tuple[str, str], row, user_id, key: bytes, salts: dict | None = None) -> dict:
    """The link that chains ``row`` at position ``seq`` after ``prev`` (its keyed and public hashes): every column
    of ``audit_chain`` but ``sealed_at`` and ``late``. New salts unless ``salts`` are given."""
    salts = salts or form.new_salts()
    row_digest = form.row_hash(form.public_form(form.canonical_dict(row, user_id), salts))
    material = form.material(seq, row.timestamp, row.category, row_digest)
    return {"seq": seq, "audit_log_id": row.id, "user_id": user_id, "prev_hash": prev[0],
            "link_hash": form.hmac_link(key, prev[0], material), "public_hash": form.public_link(prev[1], material),
            "row_hash": row_digest, "event_timestamp": row.timestamp, "category": row.category, "salts": salts,
            "erased": None}


@dataclass
class SealResult:
    sealed: int = 0
    late: int = 0
    head_seq: int = 0


def _rows(connection, query):
    """Rows of ``audit_logs`` with timestamps as aware datetimes (the column type's own conversion)."""
    return list(connection.execute(query))


def seal(max_rows: int | None = None, wait: bool = True) -> SealResult:
    """Chain every committed, unsealed audit row. Returns how many were sealed (and how many were late).

    ``wait=False`` (the background sealer): when another process is sealing on PostgreSQL, give up at
    once instead of queueing behind it; that process seals these rows too. A foreground seal (``wait``) first moves
    the domain events still in the outbox (``write/outbox.py``), so that it covers every committed event."""
    if wait:
        move_committed()
    result = SealResult()
    races = 0
    while True:
        try:
            batch = _seal_batch(result, wait)
        except IntegrityError:
            # Cannot happen while sealers serialise (advisory lock, BEGIN IMMEDIATE); bounded, so that a
            # constraint violation of another kind never turns into an endless loop.
            races += 1
            if races > 5:
                raise
            log.info("audit chain: another sealer won the race; retrying")
            continue
        if batch == 0 or (max_rows is not None and result.sealed >= max_rows):
            break
    if result.late:
        log.warning("audit chain: %d events committed late (after newer events were sealed); chained now",
                    result.late)
    maybe_checkpoint()
    return result


def _lock_chain(conn, wait: bool = True) -> bool:
    """Serialise sealers: one at a time reads the head and appends to it. False: busy, and not waiting."""
    if conn.dialect.name == "postgresql":
        if not wait:
            return bool(conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK}))
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
    elif conn.dialect.name == "sqlite":
        # Take the write lock before reading the head (it waits out the busy timeout), so that two processes
        # never hash the same rows and collide on the chain's unique positions, which seal() would retry.
        if not conn.connection.dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return True


def _head(conn) -> tuple[int, str, str]:
    """The last link (position, keyed hash, public hash). An empty chain continues from the latest legacy retention
    purge's cut, if one emptied it (purges before migration 0016 deleted links), so that positions keep counting and
    the cut stays the anchor ``verify`` expects; the public chain then starts from GENESIS."""
    head = conn.execute(select(_chain.c.seq, _chain.c.link_hash, _chain.c.public_hash)
                        .order_by(_chain.c.seq.desc()).limit(1)).first()
    if head is not None:
        return head.seq, head.link_hash, head.public_hash or GENESIS
    cut = latest_purge_cut(conn)
    return (cut["seq"], cut["hash"], cut.get("public") or GENESIS) if cut else (0, GENESIS, GENESIS)


def rebuild_point(conn) -> tuple[int, dict] | None:
    """Migration 0016's checkpoint (its event's id and metadata): the first CHAIN_CHECKPOINT event that says the chain
    was rebuilt in its new form. Only the first counts: a later one can only be forged."""
    rows = conn.execute(select(_table.c.id, _table.c["metadata"])
                        .where(_table.c.action_type == ActionType.CHAIN_CHECKPOINT.value).order_by(_table.c.id))
    for audit_id, metadata in rows:
        if isinstance(metadata, dict) and isinstance(metadata.get("rechained"), dict):
            return audit_id, metadata
    return None


def purge_cuts(conn) -> list[dict]:
    """The chain cuts (``{"seq", "hash"}``) recorded by RETENTION_PURGE events of purges before migration 0016, which
    deleted a prefix of the chain; since then a purge leaves its links as tombstones and cuts nothing. A cut counts
    only when its event is older than 0016's checkpoint: one recorded after it was forged (it would hide a deleted,
    signed prefix)."""
    point = rebuild_point(conn)
    if point is None:
        return []
    rows = conn.execute(select(_table.c["metadata"]).where(_table.c.action_type == ActionType.RETENTION_PURGE.value,
                                                           _table.c.id < point[0]))
    cuts = []
    for (metadata,) in rows:
        cut = (metadata or {}).get("chain_cut") if isinstance(metadata, dict) else None
        if isinstance(cut, dict) and isinstance(cut.get("seq"), int) and cut.get("hash"):
            cuts.append(cut)
    return cuts


def latest_purge_cut(conn) -> dict | None:
    cuts = purge_cuts(conn)
    return max(cuts, key=lambda c: c["seq"]) if cuts else None


def _late_ids(conn, top: int) -> list[int]:
    """Ids below the sealed head, within ``LATE_WINDOW``, that have no link: rows that committed after newer
    ones were sealed. Only ids are compared (an anti-join of two primary-key ranges, both bounded, index-only
    where the pages are visible); the full rows are read for the late ones alone. Every background pass runs
    this, so it must stay cheap: joining the full rows of the window cost several times as much
    (docs/performance.md)."""
    low = top - LATE_WINDOW
    linked = (select(_chain.c.audit_log_id)
              .where(_chain.c.audit_log_id > low, _chain.c.audit_log_id < top).subquery())
    query = (select(_table.c.id).outerjoin(linked, linked.c.audit_log_id == _table.c.id)
             .where(_table.c.id > low, _table.c.id < top, linked.c.audit_log_id.is_(None)))
    return list(conn.scalars(query))


def _seal_batch(result: SealResult, wait: bool = True) -> int:
    with db.engine.begin() as conn:
        if not _lock_chain(conn, wait):
            return 0
        seq, prev, prev_public = _head(conn)
        top = conn.scalar(select(func.max(_chain.c.audit_log_id))) or 0
        late_ids = _late_ids(conn, top)
        late = _rows(conn, select(_table).where(_table.c.id.in_(late_ids)).order_by(_table.c.id)) if late_ids else []
        fresh = _rows(conn, select(_table).where(_table.c.id > top).order_by(_table.c.id).limit(SEAL_BATCH))
        links = []
        key, sealed_at = _key(), utcnow()
        for row, is_late in [(r, True) for r in late] + [(r, False) for r in fresh]:
            seq += 1
            link = new_link(seq, (prev, prev_public), row, row.user_id, key)
            link.update(sealed_at=sealed_at, late=is_late)
            links.append(link)
            prev, prev_public = link["link_hash"], link["public_hash"]
        insert_links(conn, links)
        result.sealed += len(links)
        result.late += len(late)
        result.head_seq = seq
        return len(links)


#: The most rows one background run seals: the writer thread that runs it must get back to its queue.
BACKGROUND_MAX_ROWS = 10_000


def seal_in_background() -> int:
    """One background run (the writer thread's housekeeping): seal what is committed when it looks, pass by
    pass while passes come back full (a backlog), up to BACKGROUND_MAX_ROWS rows; returns how many.

    It does not chase the events that arrive meanwhile: every pass also re-reads the late-commit window
    (LATE_WINDOW rows), and under steady traffic "seal until nothing is new" would run pass after pass for as
    long as the traffic lasted, several times the PostgreSQL CPU per audited request. Those events are sealed at
    the next run."""
    sealed = 0
    while sealed < BACKGROUND_MAX_ROWS:
        # max_rows=1: one pass (up to SEAL_BATCH new rows); wait=False: if another worker is sealing, it seals
        # these rows too.
        passed = seal(max_rows=1, wait=False).sealed
        sealed += passed
        if passed < SEAL_BATCH:
            break
    return sealed


def seal_lag() -> tuple[int, float]:
    """(events above the sealed head, seconds since the first of them happened; 0 when everything is sealed)."""
    top = db.session.scalar(select(func.max(_chain.c.audit_log_id))) or 0
    behind = db.session.scalar(select(func.count()).select_from(_table).where(_table.c.id > top)) or 0
    if not behind:
        return 0, 0.0
    oldest = db.session.scalar(select(_table.c.timestamp).where(_table.c.id > top).order_by(_table.c.id).limit(1))
    return behind, max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0


def chain_head() -> tuple[int | None, int]:
    """(the last link's position or None for an empty chain, the highest sealed event id or 0)."""
    row = db.session.execute(select(func.max(_chain.c.seq), func.max(_chain.c.audit_log_id))).one()
    return row[0], row[1] or 0
