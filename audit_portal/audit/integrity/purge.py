"""Retention: delete the events past their category's retention, outside every legal hold, keeping their links.

The purge seals first and reads the chain's head; then it deletes only events sealed at links up to that head,
older than their category's cutoff (AUDIT_RETENTION_DAYS_BY_CATEGORY, the rest AUDIT_RETENTION_DAYS; or one cutoff
for all with ``--older-than-days``) and outside every active hold. Their links stay as tombstones (row hash, time,
category): before it deletes anything it writes its ``audit_purges`` row (cutoffs, holds, head) and its
RETENTION_PURGE event, so that ``verify`` tells each missing event it removed from one deleted by hand
(``tombstones.py``); ``purge_plan.py`` makes the plan. Older purges cut a prefix of the chain and recorded the cut in
their RETENTION_PURGE event; ``seal.py`` and ``verify.py`` still read those.

On a partitioned PostgreSQL table (``record/partitions.py``) a month whose every row goes (and which lies wholly
before the latest cutoff) goes as a table: detached (and renamed ``audit_logs_purged_YYYY_MM``) in one transaction,
with the rollup's recount, then dropped in a second; each step waits for its locks
``AUDIT_PARTITION_LOCK_TIMEOUT_MS`` at a time, from a savepoint, so requests never queue behind it for longer (the
drop also needs ``users`` to itself for a moment: it removes the month's foreign-key triggers there). The other
events go in batches of PURGE_BATCH, in time order, as on SQLite. Either way the error rollup recounts the days it
removed. A hold placed while the purge runs stops it (nothing it protects is deleted; run it again).
"""

from __future__ import annotations

import logging
import time

from flask import current_app
from sqlalchemy import and_, delete, func, or_, select, text

from ...extensions import db
from ...timeutil import utcnow
from ..record import partitions
from ..record.enums import ActionType, ResourceType
from ..record.events import build_event
from ..record.models import AuditChainLink, AuditLog
from ..write import rollup
from ..write.inserts import insert_events
from . import tombstones
from .holds import active_holds
from .models import AuditPurge
from .purge_plan import PartitionDrop, PurgePlan, describe_cutoffs, goes, plan_purge

__all__ = ["HoldsChanged", "PartitionDrop", "PurgePlan", "describe_cutoffs", "execute_purge", "plan_purge"]

log = logging.getLogger(__name__)

PURGE_BATCH = 5000
_chain = AuditChainLink.__table__
_table = AuditLog.__table__
_purges = AuditPurge.__table__


class _MonthChanged(Exception):
    """An event arrived in a month planned to be dropped."""


class HoldsChanged(RuntimeError):
    """A legal hold was placed after the purge read the holds: it stops rather than delete what the hold keeps."""


def _check_holds(conn, plan: PurgePlan) -> None:
    placed = set(active_holds(conn)) - set(plan.holds)
    if placed:
        raise HoldsChanged(f"{len(placed)} legal hold(s) were placed while the retention purge ran; it stopped "
                           "before deleting anything they keep. Run it again.")


def execute_purge(plan: PurgePlan, actor=None, progress=None) -> int:
    """Record the purge (its ``audit_purges`` row and RETENTION_PURGE event), then drop the planned months and
    delete the rest of the planned events in batches of PURGE_BATCH; their links stay. Returns how many went."""
    db.session.rollback()
    # Months an interrupted purge detached but did not drop (their events were already purged and recorded).
    partitions.drop_detached(db.engine, lock_timeout_ms=current_app.config["AUDIT_PARTITION_LOCK_TIMEOUT_MS"])
    if plan.count == 0 and not plan.drops:
        return 0
    purge_id = _record(plan, actor) if plan.count else None
    plan.deleted = 0
    try:
        for drop in sorted(plan.drops, key=lambda drop: drop.count):
            plan.deleted += _drop_partition(drop, plan)
            if progress:
                progress(drop.count)
        if plan.count > plan.deleted:
            _delete_in_batches(plan, progress)
    finally:
        if purge_id is not None and plan.deleted != plan.count:
            # Stopped half-way (a hold placed meanwhile, an error) or rows changed: the record says what went.
            log.warning("retention purge %s: planned %d events, deleted %d", purge_id, plan.count, plan.deleted)
            with db.engine.begin() as conn:
                conn.execute(_purges.update().where(_purges.c.id == purge_id).values(count=plan.deleted))
    return plan.deleted


def _record(plan: PurgePlan, actor) -> int:
    """Write the purge's ``audit_purges`` row and its RETENTION_PURGE event, committed before anything is deleted:
    whatever goes afterwards is covered by it, even if the purge stops half-way."""
    cutoffs = {key: value.isoformat() for key, value in plan.cutoffs.items()}
    held = [[start.isoformat(), end.isoformat()] for start, end in plan.holds]
    with db.engine.begin() as conn:
        _check_holds(conn, plan)
        purge_id = conn.execute(_purges.insert().values(at=utcnow(), cutoffs=cutoffs, holds=held,
                                                        head_seq=plan.head_seq, count=plan.count)
                                .returning(_purges.c.id)).scalar_one()
        record = tombstones.as_record({"id": purge_id, "cutoffs": cutoffs, "holds": held, "head_seq": plan.head_seq})
        conn.execute(_purges.update().where(_purges.c.id == purge_id).values(
            mac=tombstones.purge_mac(current_app.config["AUDIT_HMAC_KEY"].encode(), record)))
        insert_events(conn, [_purge_event(plan, purge_id, cutoffs, held, actor)])
    return purge_id


def _delete_in_batches(plan: PurgePlan, progress) -> None:
    """Delete the planned events outside the dropped months, PURGE_BATCH at a time, in (timestamp, id) order, counting
    them in ``plan.deleted``."""
    after = None
    goes_now = goes(_table, plan)
    while True:
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL audit_portal.purge = 'on'"))
            _check_holds(conn, plan)
            query = (select(_table.c.id, _table.c.timestamp)
                     .select_from(_table.join(_chain, _chain.c.audit_log_id == _table.c.id)).where(goes_now)
                     .order_by(_table.c.timestamp, _table.c.id).limit(PURGE_BATCH))
            if after is not None:
                moment, last_id = after
                query = query.where(_table.c.timestamp >= moment, or_(
                    _table.c.timestamp > moment, and_(_table.c.timestamp == moment, _table.c.id > last_id)))
            rows = conn.execute(query).all()
            if not rows:
                return
            ids = [row.id for row in rows]
            after = (rows[-1].timestamp, rows[-1].id)
            # The days this batch deletes errors from: the error rollup recounts them with the same commit.
            first, last = conn.execute(select(func.min(_table.c.timestamp), func.max(_table.c.timestamp))
                                       .where(_table.c.id.in_(ids), _table.c.status == rollup.ERROR)).one()
            batch = conn.execute(delete(_table).where(_table.c.id.in_(ids))).rowcount
            if first is not None:
                rollup.rebuild(conn, rollup.utc_day(first), rollup.utc_day(last))
        plan.deleted += batch
        if progress:
            progress(batch)


def _drop_partition(drop: PartitionDrop, plan: PurgePlan) -> int:
    """Detach ``drop`` in one transaction (with the error rollup's recount), renamed ``audit_logs_purged_YYYY_MM``;
    then drop it in a second one. Its links stay (tombstones), so this costs no work per row.

    The detach locks ``audit_logs`` (ACCESS EXCLUSIVE) and the tables its foreign keys refer to (users: SHARE ROW
    EXCLUSIVE); the drop removes the detached table's foreign-key triggers on those tables, which takes their
    ACCESS EXCLUSIVE lock. Each step waits AUDIT_PARTITION_LOCK_TIMEOUT_MS at a time for its locks (a long export
    holds audit_logs, a request its user) and tries again, so requests never queue behind it for longer. A
    purge that stops between the two leaves the renamed table, which the next purge drops first."""
    wait_ms = current_app.config["AUDIT_PARTITION_LOCK_TIMEOUT_MS"]
    name = drop.name
    detached = partitions.detached_name(name)
    try:
        locked = _detach(drop, plan, detached, wait_ms)
    except _MonthChanged:
        log.info("retention purge: %s changed since the plan; its events go in batches", name)
        return 0
    drop.locked_seconds, drop.dropped = time.monotonic() - locked, True
    partitions.forget(db.engine)
    started = time.monotonic()
    partitions.drop_detached(db.engine, [detached], wait_ms)
    drop.drop_seconds = time.monotonic() - started
    log.info("retention purge: dropped %s (%d events): audit_logs locked %.3f s, dropped in %.3f s",
             name, drop.count, drop.locked_seconds, drop.drop_seconds)
    return drop.count


def _detach(drop: PartitionDrop, plan: PurgePlan, detached: str, wait_ms: int) -> float:
    """The detach's transaction; returns when it took audit_logs' lock (``time.monotonic()``)."""
    name = drop.name
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL audit_portal.purge = 'on'"))
        # No event arrives in the month from here on (an old replay, a seed: they wait, then make it again): the
        # month dropped is the month counted and checked.
        partitions.with_lock_retries(conn, [f'LOCK TABLE "{name}" IN SHARE MODE'], wait_ms)
        count = conn.scalar(text(f'SELECT count(*) FROM "{name}"'))  # noqa: S608
        if count != drop.count:
            # An event arrived in the month since the plan (a replay): it may have to stay, so the month is not
            # dropped; its planned events go in the batches.
            raise _MonthChanged(name)
        _check_holds(conn, plan)
        first, last = conn.execute(text(f'SELECT min(timestamp), max(timestamp) FROM "{name}" '  # noqa: S608
                                        "WHERE status = :error"), {"error": rollup.ERROR}).one()
        locked = time.monotonic()
        partitions.with_lock_retries(conn, [f'ALTER TABLE audit_logs DETACH PARTITION "{name}"',
                                            f'ALTER TABLE "{name}" RENAME TO "{detached}"'], wait_ms)
        if first is not None:
            rollup.rebuild(conn, rollup.utc_day(first), rollup.utc_day(last))
    return locked


def _purge_event(plan: PurgePlan, purge_id: int, cutoffs: dict, holds: list, actor) -> dict:
    kept = f"; {len(holds)} legal hold(s) kept" if holds else ""
    return build_event(
        ActionType.RETENTION_PURGE, ResourceType.AUDIT_LOG, str(purge_id),
        f"Retention purge {purge_id} deleted {plan.count:,} events {describe_cutoffs(plan)} "
        f"(sealed up to link {plan.head_seq}{kept})",
        timestamp=utcnow(), user_id=actor.id if actor else None, username=actor.username if actor else None,
        metadata={"purge_id": purge_id, "count": plan.count, "cutoffs": cutoffs, "holds": holds,
                  "head_seq": plan.head_seq, "by_category": dict(sorted(plan.by_category.items())),
                  "older_than_days": plan.older_than_days,
                  "range": {"from": plan.first_timestamp.isoformat() if plan.first_timestamp else None,
                            "to": plan.last_timestamp.isoformat() if plan.last_timestamp else None}},
    )
