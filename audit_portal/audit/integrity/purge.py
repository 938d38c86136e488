"""Retention: delete old events, keeping the hash chain verifiable.

Only sealed events are purged, and only a prefix of the chain: the purge cuts the chain at a link and
records that cut (position and hash) in its RETENTION_PURGE event, where ``verify`` finds it.

On a partitioned PostgreSQL table (``record/partitions.py``) a month whose whole range lies before the cutoff
and whose every row is sealed inside that prefix goes as a table: its links are deleted and it is detached (and
renamed ``audit_logs_purged_YYYY_MM``) in one transaction, with the rollup's recount, then dropped in a second;
each step waits for its locks ``AUDIT_PARTITION_LOCK_TIMEOUT_MS`` at a time, from a savepoint, so requests never
queue behind it for longer (the drop also needs ``users`` to itself for a moment: it removes the month's
foreign-key triggers there). The rest of the prefix (a month with a row sealed after a younger one, the days of
the cutoff's own month) goes in batches of PURGE_BATCH, as on SQLite. Either way the error rollup recounts the
days it removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, text

from ...extensions import db
from ...timeutil import utcnow
from ..record import partitions
from ..record.enums import ActionType, ResourceType
from ..record.events import build_event
from ..record.models import AuditChainLink, AuditLog
from ..write import rollup
from ..write.inserts import insert_events
from .seal import seal

log = logging.getLogger(__name__)

PURGE_BATCH = 5000
_chain = AuditChainLink.__table__
_table = AuditLog.__table__


@dataclass
class PartitionDrop:
    """A month the purge drops whole."""

    name: str
    lower: datetime
    upper: datetime
    count: int
    #: Filled in by the purge: seconds spent deleting the month's chain links, and seconds from the detach to the
    #: commit (while ``audit_logs`` is locked against every other statement).
    links_seconds: float | None = None
    locked_seconds: float | None = None
    #: Seconds the drop of the detached table took (it locks users, whose foreign-key triggers it removes).
    drop_seconds: float | None = None


@dataclass
class PurgePlan:
    cutoff: datetime
    cut_seq: int  #: links 1..cut_seq (and their events) go
    count: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    cut_hash: str | None
    #: Months dropped as tables (their events are part of ``count``); the rest of the prefix goes in batches.
    drops: list[PartitionDrop] = field(default_factory=list)
    #: The public chain's hash at the cut.
    cut_public: str | None = None


def _droppable(conn, cutoff: datetime, cut_seq: int) -> list[PartitionDrop]:
    """The partitions that lie wholly before ``cutoff`` and hold only events sealed at links 1..``cut_seq``, or none
    at all (a month that earlier purges emptied row by row, as a daily purge does: dropped too, so empty months do
    not pile up)."""
    drops = []
    for partition in partitions.partitions(conn):
        if partition.upper > cutoff:
            continue
        count, outside = conn.execute(text(
            f'SELECT count(*), count(*) FILTER (WHERE c.seq IS NULL OR c.seq > :cut) FROM "{partition.name}" p '  # noqa: S608
            "LEFT JOIN audit_chain c ON c.audit_log_id = p.id"), {"cut": cut_seq}).one()
        if not outside:
            drops.append(PartitionDrop(partition.name, partition.lower, partition.upper, count))
    return drops


def plan_purge(older_than_days: int) -> PurgePlan:
    """What a purge would delete: the longest run of the chain, from its start, of events older than the cutoff."""
    seal()
    cutoff = utcnow() - timedelta(days=older_than_days)
    first_young = db.session.scalar(
        select(func.min(_chain.c.seq)).select_from(_chain.join(_table, _table.c.id == _chain.c.audit_log_id))
        .where(_table.c.timestamp >= cutoff)
    )
    head = db.session.scalar(select(func.max(_chain.c.seq))) or 0
    start = db.session.scalar(select(func.min(_chain.c.seq))) or 1
    cut_seq = (first_young - 1) if first_young is not None else head
    if cut_seq < start:
        return PurgePlan(cutoff, cut_seq, 0, None, None, None, _droppable(db.session.connection(), cutoff, cut_seq))
    span = (select(func.count(), func.min(_table.c.timestamp), func.max(_table.c.timestamp))
            .select_from(_chain.join(_table, _table.c.id == _chain.c.audit_log_id)).where(_chain.c.seq <= cut_seq))
    count, first, last = db.session.execute(span).one()
    cut_hash, cut_public = db.session.execute(select(_chain.c.link_hash, _chain.c.public_hash)
                                              .where(_chain.c.seq == cut_seq)).one()
    ts = AuditLog.timestamp.type
    drops = _droppable(db.session.connection(), cutoff, cut_seq)
    return PurgePlan(cutoff, cut_seq, count, ts.process_result_value(_dt(first), None),
                     ts.process_result_value(_dt(last), None), cut_hash, drops, cut_public)


def _dt(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def execute_purge(plan: PurgePlan, actor=None, progress=None) -> int:
    """Drop the planned partitions, then delete the rest of the planned events and their links in batches of
    PURGE_BATCH; record RETENTION_PURGE.

    The RETENTION_PURGE event commits in the same transaction as the last step: there is no moment at
    which the chain has lost its start without the cut that explains it (a sealer that finds the chain
    empty continues from that cut). A purge interrupted before its last batch leaves a chain whose start
    ``verify`` reports; running the purge again completes it and records the cut."""
    db.session.rollback()
    # Months an interrupted purge detached but did not drop (their events were already purged and recorded).
    partitions.drop_detached(db.engine, lock_timeout_ms=current_app.config["AUDIT_PARTITION_LOCK_TIMEOUT_MS"])
    if plan.count == 0 and not plan.drops:
        return 0
    deleted = 0
    in_batches = plan.count - sum(drop.count for drop in plan.drops)
    drops = sorted(plan.drops, key=lambda drop: drop.count > 0)  # empty months first: the event goes with events
    for i, drop in enumerate(drops):
        last = i == len(drops) - 1 and in_batches == 0 and drop.count > 0
        deleted += _drop_partition(drop, (lambda n: _purge_event(plan, n, actor)) if last else None, deleted)
        if progress:
            progress(drop.count)
    start = db.session.scalar(select(func.min(_chain.c.seq))) or 1
    db.session.rollback()
    while in_batches and start <= plan.cut_seq:
        end = min(start + PURGE_BATCH - 1, plan.cut_seq)
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL audit_portal.purge = 'on'"))
            ids = select(_chain.c.audit_log_id).where(_chain.c.seq.between(start, end))
            # The days this batch deletes errors from: the error rollup recounts them with the same commit.
            first, last = conn.execute(select(func.min(_table.c.timestamp), func.max(_table.c.timestamp))
                                       .where(_table.c.id.in_(ids), _table.c.status == rollup.ERROR)).one()
            if end == plan.cut_seq:
                # The event goes in before the last rows go out: on SQLite an id is reused once the rows
                # with the highest ids are deleted, and a purge of everything must not hand out id 1 again.
                expected = conn.scalar(select(func.count()).select_from(_table).where(_table.c.id.in_(ids)))
                insert_events(conn, [_purge_event(plan, deleted + expected, actor)])
                batch = conn.execute(delete(_table).where(_table.c.id.in_(ids))).rowcount
                if batch != expected:  # someone else deleted rows meanwhile: roll back rather than misreport
                    raise RuntimeError("audit rows changed during the retention purge; run it again")
            else:
                batch = conn.execute(delete(_table).where(_table.c.id.in_(ids))).rowcount
            if first is not None:
                rollup.rebuild(conn, rollup.utc_day(first), rollup.utc_day(last))
            deleted += batch
            links = conn.execute(delete(_chain).where(_chain.c.seq.between(start, end))).rowcount
        if progress:
            progress(links)
        start = end + 1
    return deleted


def _drop_partition(drop: PartitionDrop, final_event, deleted_before: int) -> int:
    """Delete ``drop``'s links and detach it in one transaction (with the error rollup's recount, and the
    RETENTION_PURGE event that ``final_event(total)`` builds when this is the purge's last step), renamed
    ``audit_logs_purged_YYYY_MM``; then drop it in a second one.

    The detach locks ``audit_logs`` (ACCESS EXCLUSIVE) and the tables its foreign keys refer to (users: SHARE ROW
    EXCLUSIVE); the drop removes the detached table's foreign-key triggers on those tables, which takes their
    ACCESS EXCLUSIVE lock. Each step waits AUDIT_PARTITION_LOCK_TIMEOUT_MS at a time for its locks (a long export
    holds audit_logs, a request its user) and tries again, so requests never queue behind it for longer. A
    purge that stops between the two leaves the renamed table, which the next purge drops first."""
    wait_ms = current_app.config["AUDIT_PARTITION_LOCK_TIMEOUT_MS"]
    name = drop.name
    detached = partitions.detached_name(name)
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL audit_portal.purge = 'on'"))
        # No event arrives in the month from here on (an old replay, a seed: they wait, then make it again): the
        # month dropped is the month counted and checked sealed.
        partitions.with_lock_retries(conn, [f'LOCK TABLE "{name}" IN SHARE MODE'], wait_ms)
        count = conn.scalar(text(f'SELECT count(*) FROM "{name}"'))  # noqa: S608
        if count != drop.count:
            raise RuntimeError(f"partition {name} changed during the retention purge; run it again")
        first, last = conn.execute(text(f'SELECT min(timestamp), max(timestamp) FROM "{name}" '  # noqa: S608
                                        "WHERE status = :error"), {"error": rollup.ERROR}).one()
        if final_event is not None:
            insert_events(conn, [final_event(deleted_before + count)])
        started = time.monotonic()
        conn.execute(text(f'DELETE FROM audit_chain WHERE audit_log_id IN (SELECT id FROM "{name}")'))  # noqa: S608
        drop.links_seconds = time.monotonic() - started
        locked = time.monotonic()
        partitions.with_lock_retries(conn, [f'ALTER TABLE audit_logs DETACH PARTITION "{name}"',
                                            f'ALTER TABLE "{name}" RENAME TO "{detached}"'], wait_ms)
        if first is not None:
            rollup.rebuild(conn, rollup.utc_day(first), rollup.utc_day(last))
    drop.locked_seconds = time.monotonic() - locked
    partitions.forget(db.engine)
    started = time.monotonic()
    partitions.drop_detached(db.engine, [detached], wait_ms)
    drop.drop_seconds = time.monotonic() - started
    log.info("retention purge: dropped %s (%d events): links deleted in %.2f s, audit_logs locked %.3f s, "
             "dropped in %.3f s", name, count, drop.links_seconds, drop.locked_seconds, drop.drop_seconds)
    return count


def _purge_event(plan: PurgePlan, deleted: int, actor) -> dict:
    return build_event(
        ActionType.RETENTION_PURGE, ResourceType.AUDIT_LOG, None,
        f"Retention purge deleted {deleted:,} events older than {plan.cutoff:%Y-%m-%d %H:%M} UTC",
        timestamp=utcnow(), user_id=actor.id if actor else None, username=actor.username if actor else None,
        metadata={"cutoff": plan.cutoff.isoformat(), "count": deleted,
                  "range": {"from": plan.first_timestamp.isoformat() if plan.first_timestamp else None,
                            "to": plan.last_timestamp.isoformat() if plan.last_timestamp else None},
                  "chain_cut": {"seq": plan.cut_seq, "hash": plan.cut_hash, "public": plan.cut_public}},
    )
