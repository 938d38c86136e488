"""Retention: delete old events in bounded batches, keeping the hash chain verifiable.

Only sealed events are purged, and only a prefix of the chain: the purge cuts the chain at a link and
records that cut (position and hash) in its RETENTION_PURGE event, where ``verify`` finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text

from ...extensions import db
from ...timeutil import utcnow
from ..record.enums import ActionType, ResourceType
from ..record.events import build_event
from ..record.models import AuditChainLink, AuditLog
from ..write import rollup
from ..write.inserts import insert_events
from .seal import seal

PURGE_BATCH = 5000
_chain = AuditChainLink.__table__
_table = AuditLog.__table__


@dataclass
class PurgePlan:
    cutoff: datetime
    cut_seq: int  #: links 1..cut_seq (and their events) go
    count: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    cut_hash: str | None


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
        return PurgePlan(cutoff, cut_seq, 0, None, None, None)
    span = (select(func.count(), func.min(_table.c.timestamp), func.max(_table.c.timestamp))
            .select_from(_chain.join(_table, _table.c.id == _chain.c.audit_log_id)).where(_chain.c.seq <= cut_seq))
    count, first, last = db.session.execute(span).one()
    cut_hash = db.session.scalar(select(_chain.c.link_hash).where(_chain.c.seq == cut_seq))
    ts = AuditLog.timestamp.type
    return PurgePlan(cutoff, cut_seq, count, ts.process_result_value(_dt(first), None),
                     ts.process_result_value(_dt(last), None), cut_hash)


def _dt(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def execute_purge(plan: PurgePlan, actor=None, progress=None) -> int:
    """Delete the planned events and their links in batches of PURGE_BATCH; record RETENTION_PURGE.

    The RETENTION_PURGE event commits in the same transaction as the last batch: there is no moment at
    which the chain has lost its start without the cut that explains it (a sealer that finds the chain
    empty continues from that cut). A purge interrupted before its last batch leaves a chain whose start
    ``verify`` reports; running the purge again completes it and records the cut."""
    if plan.count == 0:
        return 0
    deleted = 0
    start = db.session.scalar(select(func.min(_chain.c.seq))) or 1
    db.session.rollback()
    while start <= plan.cut_seq:
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
            conn.execute(delete(_chain).where(_chain.c.seq.between(start, end)))
        if progress:
            progress(end - start + 1)
        start = end + 1
    return deleted


def _purge_event(plan: PurgePlan, deleted: int, actor) -> dict:
    return build_event(
        ActionType.RETENTION_PURGE, ResourceType.AUDIT_LOG, None,
        f"Retention purge deleted {deleted:,} events older than {plan.cutoff:%Y-%m-%d %H:%M} UTC",
        timestamp=utcnow(), user_id=actor.id if actor else None, username=actor.username if actor else None,
        metadata={"cutoff": plan.cutoff.isoformat(), "count": deleted,
                  "range": {"from": plan.first_timestamp.isoformat() if plan.first_timestamp else None,
                            "to": plan.last_timestamp.isoformat() if plan.last_timestamp else None},
                  "chain_cut": {"seq": plan.cut_seq, "hash": plan.cut_hash}},
    )
