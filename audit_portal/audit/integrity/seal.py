"""Tamper evidence: a keyed hash chain over committed audit rows, sealed in the background.

Each committed audit row gets one link in ``audit_chain``: ``HMAC-SHA256(AUDIT_HMAC_KEY, prev_hash +
canonical(row))``. Sealing runs outside the request path (the background writer, ``flask audit verify``,
``flask audit purge``), never updates an audit row, and is safe with several processes: links have a
unique position and a unique row, and PostgreSQL sealers take an advisory lock. Periodic checkpoints of
the chain head (``checkpoints.py``) let ``verify.py`` detect a truncated tail or a chain recomputed without the key.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import DateTime, Row, func, select, text
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...timeutil import UTCDateTime, utcnow
from ..delivery.locks import SEALER
from ..record.enums import ActionType
from ..record.models import EVENT_COLUMNS, AuditChainLink, AuditLog
from ..write.inserts import insert_links
from .checkpoints import maybe_checkpoint

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SEAL_BATCH = 2000
#: How far below the highest sealed id the sealer looks for rows that committed late.
LATE_WINDOW = 20_000
#: One key (a bigint): serialises every seal pass, whichever process runs it (``delivery/locks.py``).
_ADVISORY_LOCK = SEALER
_table = AuditLog.__table__
_chain = AuditChainLink.__table__


def _key() -> bytes:
    return current_app.config["AUDIT_HMAC_KEY"].encode()


_CANONICAL_KEYS = ("id", *EVENT_COLUMNS)
#: The time columns: the canonical form writes them as UTC ISO text with microseconds.
_TIME_KEYS = tuple(c.name for c in _table.columns if isinstance(c.type, (DateTime, UTCDateTime)))
#: One encoder for every row (``json.dumps`` with options builds a new one per call).
_encode_sorted = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


def canonical(row, user_id=None) -> bytes:
    """A stable serialisation of an audit row (every column; ``user_id`` as it was when sealed)."""
    if isinstance(row, Row) and row._fields == _CANONICAL_KEYS:
        data = dict(zip(_CANONICAL_KEYS, row, strict=True))  # a row of ``select(audit_logs)``: no lookups by name
    else:
        values = row._mapping if isinstance(row, Row) else None
        data = {name: values[name] if values is not None else getattr(row, name) for name in _CANONICAL_KEYS}
    data["user_id"] = user_id
    for name in _TIME_KEYS:
        value = data[name]
        if isinstance(value, datetime):
            data[name] = value.astimezone(UTC).isoformat(timespec="microseconds")
    return _encode_sorted(data).encode()


def link_hash(prev_hash: str, row, user_id, key: bytes | None = None) -> str:
    return hmac.digest(key or _key(), prev_hash.encode() + b"|" + canonical(row, user_id), "sha256").hex()


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
    once instead of queueing behind it; that process seals these rows too."""
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


def _head(conn) -> tuple[int, str]:
    """The last link (position, hash). An empty chain continues from the latest retention purge's cut, if
    one emptied it, so that positions keep counting and the cut stays the anchor ``verify`` expects."""
    head = conn.execute(select(_chain.c.seq, _chain.c.link_hash).order_by(_chain.c.seq.desc()).limit(1)).first()
    if head is not None:
        return head.seq, head.link_hash
    cut = latest_purge_cut(conn)
    return (cut["seq"], cut["hash"]) if cut else (0, GENESIS)


def purge_cuts(conn) -> list[dict]:
    """The chain cuts (``{"seq", "hash"}``) recorded by RETENTION_PURGE events still in the log."""
    rows = conn.execute(select(_table.c["metadata"]).where(_table.c.action_type == ActionType.RETENTION_PURGE.value))
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
        seq, prev = _head(conn)
        top = conn.scalar(select(func.max(_chain.c.audit_log_id))) or 0
        late_ids = _late_ids(conn, top)
        late = _rows(conn, select(_table).where(_table.c.id.in_(late_ids)).order_by(_table.c.id)) if late_ids else []
        fresh = _rows(conn, select(_table).where(_table.c.id > top).order_by(_table.c.id).limit(SEAL_BATCH))
        links = []
        key, sealed_at = _key(), utcnow()
        for row, is_late in [(r, True) for r in late] + [(r, False) for r in fresh]:
            seq += 1
            digest = link_hash(prev, row, row.user_id, key)
            links.append({"seq": seq, "audit_log_id": row.id, "user_id": row.user_id, "prev_hash": prev,
                          "link_hash": digest, "sealed_at": sealed_at, "late": is_late})
            prev = digest
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
