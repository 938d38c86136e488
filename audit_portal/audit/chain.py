"""Tamper evidence: a keyed hash chain over committed audit rows, sealed in the background.

Each committed audit row gets one link in ``audit_chain``: ``HMAC-SHA256(AUDIT_HMAC_KEY, prev_hash +
canonical(row))``. Sealing runs outside the request path (the background writer, ``flask audit verify``,
``flask audit purge``), never updates an audit row, and is safe with several processes: links have a
unique position and a unique row, and PostgreSQL sealers take an advisory lock. Periodic checkpoints of
the chain head are written as CHAIN_CHECKPOINT events and to a file in ``AUDIT_DATA_DIR``, so a
truncated tail or a chain recomputed without the key is detected by ``verify``.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import DateTime, Row, func, select, text
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..timeutil import UTCDateTime, utcnow
from .chain_models import AuditChainLink
from .enums import ActionType, ResourceType, Status
from .events import build_event
from .inserts import insert_events, insert_links
from .models import EVENT_COLUMNS, AuditLog

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SEAL_BATCH = 2000
#: How far below the highest sealed id the sealer looks for rows that committed late.
LATE_WINDOW = 20_000
CHECKPOINT_EVERY = 1000
CHECKPOINT_FILE = "chain-checkpoints.ndjson"
_ADVISORY_LOCK = 7_317_001
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
    this, so it must stay cheap: joining the full rows of the window cost about four times as much."""
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


# -- checkpoints -----------------------------------------------------------------------------


def _checkpoint_path() -> Path:
    return Path(current_app.config["AUDIT_DATA_DIR"]) / CHECKPOINT_FILE


def read_checkpoints() -> list[dict]:
    path = _checkpoint_path()
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def last_checkpoint() -> dict | None:
    """The newest checkpoint: the file's last line that holds a JSON object. Reads only the end of the file:
    every background seal pass asks, and the file gains a line per CHECKPOINT_EVERY links for as long as the
    log lives."""
    try:
        with open(_checkpoint_path(), "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            block = 4096
            while True:
                start = max(0, size - block)
                fh.seek(start)
                lines = fh.read().splitlines()
                for line in reversed(lines[1:] if start else lines):  # the block's first line may be cut
                    try:
                        point = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(point, dict):
                        return point
                if not start:
                    return None
                block *= 8
    except FileNotFoundError:
        return None


def maybe_checkpoint(force: bool = False) -> dict | None:
    """Record the chain head when it moved on by CHECKPOINT_EVERY links (or ``force``)."""
    # Its own connection: rolling back the caller's session here would throw away the caller's work.
    with db.engine.connect() as conn:
        head = conn.execute(select(_chain.c.seq, _chain.c.link_hash).order_by(_chain.c.seq.desc()).limit(1)).first()
    if head is None:
        return None
    last = last_checkpoint()
    last_seq = last["seq"] if last else 0
    if not force and head.seq - last_seq < CHECKPOINT_EVERY:
        return None
    if head.seq == last_seq:
        return last
    point = {"seq": head.seq, "hash": head.link_hash, "at": utcnow().isoformat()}
    path = _checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(point) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    event = build_event(ActionType.CHAIN_CHECKPOINT, ResourceType.AUDIT_LOG, str(head.seq),
                        f"Audit chain checkpoint at link {head.seq}", timestamp=utcnow(),
                        metadata={"seq": head.seq, "hash": head.link_hash})
    with db.engine.begin() as conn:
        insert_events(conn, [event])
    return point


# -- verification ----------------------------------------------------------------------------

#: How many problems a verification keeps (and the UI shows); the count covers them all.
MAX_PROBLEMS = 100


@dataclass
class VerifyResult:
    checked: int = 0
    late: int = 0
    head_seq: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    #: Ids of the events that were chained late (the first 20), so that an auditor can look at them.
    late_events: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problem_count

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "late": self.late, "late_events": self.late_events,
                "head_seq": self.head_seq, "problems": self.problems[:20], "problem_count": self.problem_count}


def _anchor(first_seq: int, first_prev: str) -> str | None:
    """Where the chain may start: genesis, or the cut a retention purge recorded."""
    if first_seq == 1:
        return GENESIS
    with db.engine.connect() as conn:
        cuts = purge_cuts(conn)
    for cut in cuts:
        if cut["seq"] == first_seq - 1 and cut["hash"] == first_prev:
            return first_prev
    return None


def verify(progress=None, batch: int = 5000) -> VerifyResult:
    """Walk the chain and report the first problems: changed, deleted, reordered or unsealed events,
    a chain that does not start where it should, and a tail shorter than the last checkpoint."""
    result = VerifyResult()
    first = db.session.execute(select(_chain.c.seq, _chain.c.prev_hash).order_by(_chain.c.seq).limit(1)).first()
    expected_prev = None
    expected_seq = None
    if first is not None:
        expected_prev = _anchor(first.seq, first.prev_hash)
        if expected_prev is None:
            result.problem(f"The chain starts at link {first.seq} without a retention purge that cut it "
                           "there: earlier events were deleted.")
            expected_prev = first.prev_hash
        expected_seq = first.seq
        last_seq = first.seq - 1
    else:
        # Empty: nothing sealed yet, or a retention purge removed every link (the chain goes on from its cut).
        with db.engine.connect() as conn:
            cut = latest_purge_cut(conn)
        last_seq = cut["seq"] if cut else 0
    deleted_users = None
    previous_event = None
    while True:
        query = (select(_chain, _table).outerjoin(_table, _table.c.id == _chain.c.audit_log_id)
                 .where(_chain.c.seq > last_seq).order_by(_chain.c.seq).limit(batch))
        rows = db.session.execute(query).all()
        if not rows:
            break
        for row in rows:
            m = row._mapping
            link_seq, link_prev, link_digest = m[_chain.c.seq], m[_chain.c.prev_hash], m[_chain.c.link_hash]
            audit_id = m[_chain.c.audit_log_id]
            if link_seq != expected_seq:
                span = f"Link {expected_seq} is" if link_seq - expected_seq == 1 else \
                    f"Links {expected_seq} to {link_seq - 1} are"
                result.problem(f"{span} missing from the chain (after event {previous_event}, before event "
                               f"{audit_id}): events were deleted.")
            elif link_prev != expected_prev:
                result.problem(f"Link {link_seq} (event {audit_id}) does not follow link {link_seq - 1}: the chain "
                               "was reordered or rewritten.")
            if m[_table.c.id] is None:
                result.problem(f"Event {audit_id} (link {link_seq}) was deleted.")
            else:
                stored_user = m[_table.c.user_id]
                sealed_user = m[_chain.c.user_id]
                if stored_user != sealed_user:
                    if deleted_users is None:
                        deleted_users = _deleted_user_check()
                    if not (stored_user is None and deleted_users(sealed_user)):
                        result.problem(f"Event {audit_id} (link {link_seq}): its user was changed.")
                recomputed = link_hash(link_prev, _RowView(m), sealed_user)
                if not hmac.compare_digest(recomputed, link_digest):
                    result.problem(f"Event {audit_id} (link {link_seq}) was changed after it was recorded.")
            if m[_chain.c.late]:
                result.late += 1
                if len(result.late_events) < 20:
                    result.late_events.append(audit_id)
            expected_prev, expected_seq = link_digest, link_seq + 1
            previous_event = audit_id
            result.checked += 1
            last_seq = link_seq
        if progress:
            progress(len(rows))
    result.head_seq = last_seq
    _check_checkpoints(result)
    _check_unsealed(result)
    return result


class _RowView:
    """Attribute access to the audit columns of a joined row."""

    def __init__(self, mapping):
        self._m = mapping

    def __getattr__(self, name):
        try:
            return self._m[_table.c[name]]
        except KeyError:
            raise AttributeError(name) from None


def _deleted_user_check():
    from ..users.models import User

    existing = set(db.session.scalars(select(User.id)))
    return lambda user_id: user_id is not None and user_id not in existing


def _recorded_checkpoints() -> list[tuple[str, dict]]:
    """Checkpoints from the file (outside the database) and from CHAIN_CHECKPOINT events (in it)."""
    points = [("checkpoint file", p) for p in read_checkpoints() if isinstance(p, dict)]
    events = db.session.execute(select(_table.c.id, _table.c["metadata"], _table.c.timestamp)
                                .where(_table.c.action_type == ActionType.CHAIN_CHECKPOINT.value)
                                .order_by(_table.c.id)).all()
    for event_id, metadata, at in events:
        if isinstance(metadata, dict) and isinstance(metadata.get("seq"), int):
            points.append((f"checkpoint event {event_id}", {"seq": metadata["seq"], "hash": metadata.get("hash"),
                                                           "at": at.isoformat() if at else "?"}))
    return points


def _check_checkpoints(result: VerifyResult) -> None:
    truncated = rewritten = False
    for source, point in _recorded_checkpoints():
        seq = point.get("seq")
        if not isinstance(seq, int):
            continue
        if seq > result.head_seq:
            if not truncated:
                result.problem(f"The chain ends at link {result.head_seq}, but the {source} recorded link {seq} "
                               f"at {point.get('at')}: events at the end were deleted.")
            truncated = True
            continue
        stored = db.session.scalar(select(_chain.c.link_hash).where(_chain.c.seq == seq))
        if stored is not None and stored != point.get("hash"):
            if not rewritten:
                result.problem(f"Link {seq} differs from the {source} of {point.get('at')}: the chain was "
                               "recomputed.")
            rewritten = True


def _check_unsealed(result: VerifyResult) -> None:
    top = db.session.scalar(select(func.max(_chain.c.audit_log_id))) or 0
    unsealed = (select(_table.c.id).select_from(_table.outerjoin(_chain, _chain.c.audit_log_id == _table.c.id))
                .where(_chain.c.seq.is_(None), _table.c.id < top))
    count = db.session.scalar(select(func.count()).select_from(unsealed.subquery()))
    if count:
        ids = list(db.session.scalars(unsealed.order_by(_table.c.id).limit(10)))
        more = f" and {count - len(ids)} more" if count > len(ids) else ""
        result.problem(f"{count} event(s) below the chain's head are not in the chain (events "
                       f"{', '.join(map(str, ids))}{more}): they were inserted outside the application.")


def record_verification(result: VerifyResult, actor=None) -> None:
    """Store the outcome as an AUDIT_VERIFY event (the UI shows the latest)."""
    from .service import log_audit

    log_audit(actor.id if actor else None, ActionType.AUDIT_VERIFY, ResourceType.AUDIT_LOG, None,
              f"Audit chain verified: {'intact' if result.ok else 'PROBLEMS FOUND'} ({result.checked:,} events)",
              result.as_dict(), status=Status.SUCCESS if result.ok else Status.FAILURE,
              username=actor.username if actor else None, transactional=True)
    db.session.commit()
