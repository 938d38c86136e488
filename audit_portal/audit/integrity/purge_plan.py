"""The retention purge's plan: what it would remove now, and which months it can drop whole (``purge.py`` carries it
out).

Planning seals first and reads the chain's head; only events sealed at links up to it, past their category's cutoff,
outside every active hold and not an anchor of verification (``_anchors``) go. A month (PostgreSQL partition) that
lies wholly before the latest cutoff and whose every row goes is planned as a drop (``droppable``). That proof reads
the month's indexes, not its rows, and no link row: each category's count and latest time (its category-and-time
index), a hold inside the month probed on the time index, the anchors on the primary key, and the month's ids
joined to the links' unique index (which carries their ``seq``) in the month's id range, so the plan's time grows
with the month, not with the table. The events that go outside the dropped months are counted by one aggregate
that skips those months.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import and_, column, func, literal, not_, or_, select, table

from ...extensions import db
from ...timeutil import UTCDateTime, utcnow
from ..record import partitions
from ..record.enums import ActionType
from ..record.models import AuditChainLink, AuditLog
from . import retention
from .holds import active_holds
from .seal import seal

_chain = AuditChainLink.__table__
_table = AuditLog.__table__


@dataclass
class PartitionDrop:
    """A month the purge drops whole."""

    name: str
    lower: datetime
    upper: datetime
    count: int
    #: The month's events by category, their first and last time and their highest link (all of them go).
    by_category: dict[str, int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    last_seq: int | None = None
    #: Filled in by the purge: seconds from the detach to the commit (while ``audit_logs`` is locked against every
    #: other statement), and seconds the drop of the detached table took (it locks users, whose foreign-key
    #: triggers it removes).
    locked_seconds: float | None = None
    drop_seconds: float | None = None
    #: False when the month changed after the plan (an event arrived in it) and was left to the batches.
    dropped: bool = False


@dataclass
class PurgePlan:
    #: ``{category: cutoff}``, ``"*"`` for the categories without their own period.
    cutoffs: dict[str, datetime]
    #: The active holds' ranges (both ends included).
    holds: list[tuple[datetime, datetime]]
    #: The chain's head after sealing: only events sealed at links up to it go.
    head_seq: int
    count: int
    by_category: dict[str, int]
    #: Events past their retention that the holds keep.
    held: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    #: The highest link among the events that go (streams not sent that far lose them).
    last_seq: int | None
    #: Months dropped as tables (their events are part of ``count``); the rest goes in batches.
    drops: list[PartitionDrop] = field(default_factory=list)
    #: The ``--older-than-days`` given, or None: each category's retention.
    older_than_days: int | None = None
    #: Events kept whatever their age, because verification anchors on them (``_anchors``).
    kept: list[int] = field(default_factory=list)
    #: How many the purge has deleted so far (``execute_purge``).
    deleted: int = 0


def goes(t, plan: PurgePlan):
    """Rows of ``t`` (joined with their links) that the purge removes."""
    held = retention.held(t, plan.holds)
    return and_(_chain.c.seq.is_not(None), _chain.c.seq <= plan.head_seq, retention.past(t, plan.cutoffs),
                *([not_(held)] if held is not None else []), *([t.c.id.not_in(plan.kept)] if plan.kept else []))


def _anchors(session) -> list[int]:
    """The events verification starts from, which no purge removes: the RETENTION_PURGE events of purges before
    migration 0016, whose chain cut is where the chain now starts (``seal.purge_cuts``), and the CHAIN_CHECKPOINT of
    0016's rebuild (``rechained``), below which older checkpoints no longer apply. (A purge's own record does not need
    its event: its ``mac`` vouches for it, ``tombstones.recorded_purges``; so months keep being dropped whole.)"""
    marks = {ActionType.RETENTION_PURGE.value: "chain_cut", ActionType.CHAIN_CHECKPOINT.value: "rechained"}
    rows = session.execute(select(_table.c.id, _table.c.action_type, _table.c["metadata"])
                           .where(_table.c.action_type.in_(list(marks))))
    return [audit_id for audit_id, action, metadata in rows if isinstance(metadata, dict) and marks[action] in metadata]


def _partition_table(name: str):
    return table(name, column("id"), column("timestamp", UTCDateTime()), column("category"))


def droppable(conn, plan: PurgePlan) -> list[PartitionDrop]:
    """The months that lie wholly before the latest cutoff and whose every row goes (or that hold none: a month
    that earlier purges emptied row by row, as a daily purge does: dropped too, so empty months do not pile up)."""
    latest = max(plan.cutoffs.values())
    months = (_month_drop(conn, plan, partition) for partition in partitions.partitions(conn)
              if partition.upper <= latest)
    return [drop for drop in months if drop is not None]


def _month_drop(conn, plan: PurgePlan, partition) -> PartitionDrop | None:
    """``partition``'s drop if every row in it goes, else None; read from indexes (the module's docstring).

    The month's figures come first, then its links: a row that arrives in between is counted by the join and not by
    the figures, so the month stays (its count no longer matches); one that arrives after the join has no link up
    to the head (which was read after sealing, before this), and the purge's detach, counting again under a lock,
    finds it."""
    month = _partition_table(partition.name)
    # Every row past its category's cutoff: per category present, its latest event (category, time index).
    drop = PartitionDrop(partition.name, partition.lower, partition.upper, 0)
    ts = AuditLog.timestamp.type
    for category, count, first, last in conn.execute(
            select(month.c.category, func.count(), func.min(month.c.timestamp), func.max(month.c.timestamp))
            .group_by(month.c.category)):
        first, last = ts.process_result_value(_dt(first), None), ts.process_result_value(_dt(last), None)
        cutoff = retention.cutoff_for(plan.cutoffs, category)
        if cutoff is None or not last < cutoff:
            return None
        drop.by_category[category] = count
        drop.first = min(filter(None, (drop.first, first)))
        drop.last = max(filter(None, (drop.last, last)))
    if not drop.by_category:
        return drop  # emptied by earlier purges
    held = retention.held(month, plan.holds)
    if held is not None and _any_row(conn, month, held):
        return None
    if plan.kept and _any_row(conn, month, month.c.id.in_(plan.kept)):
        return None
    # Every row sealed at a link up to the head: the month's ids against the links' ids in the same range (both
    # read from their indexes: the links' unique index carries ``seq``, migration 0018).
    low, high = conn.execute(select(func.min(month.c.id), func.max(month.c.id))).one()
    link = and_(_chain.c.audit_log_id == month.c.id, _chain.c.audit_log_id.between(low, high))
    drop.count, unsealed, drop.last_seq = conn.execute(
        select(func.count(), func.count().filter(or_(_chain.c.seq.is_(None), _chain.c.seq > plan.head_seq)),
               func.max(_chain.c.seq)).select_from(month.outerjoin(_chain, link))).one()
    if unsealed or drop.count != sum(drop.by_category.values()):
        return None
    return drop


def _any_row(conn, month, condition) -> bool:
    return conn.scalar(select(literal(1)).select_from(month).where(condition).limit(1)) is not None


def plan_purge(older_than_days: int | None = None) -> PurgePlan:
    """What a purge would delete now: with ``older_than_days``, every category's events older than that; without,
    each category's past its retention. Seals first."""
    seal()
    now = utcnow()
    days = {retention.DEFAULT: older_than_days} if older_than_days is not None else \
        retention.periods(current_app.config)
    cutoffs = retention.cutoffs(days, now)
    session = db.session
    head_seq = session.scalar(select(func.max(_chain.c.seq))) or 0
    holds = active_holds(session)
    plan = PurgePlan(cutoffs, holds, head_seq, 0, {}, 0, None, None, None, older_than_days=older_than_days,
                     kept=_anchors(session))
    plan.drops = droppable(session.connection(), plan)
    # The rest: every month but the dropped ones (partition pruning skips those).
    outside = [or_(_table.c.timestamp < drop.lower, _table.c.timestamp >= drop.upper) for drop in plan.drops]
    joined = _table.join(_chain, _chain.c.audit_log_id == _table.c.id)
    rows = session.execute(select(_table.c.category, func.count(), func.min(_table.c.timestamp),
                                  func.max(_table.c.timestamp), func.max(_chain.c.seq))
                           .select_from(joined).where(goes(_table, plan), *outside).group_by(_table.c.category)).all()
    ts = AuditLog.timestamp.type
    parts = [(category, count, ts.process_result_value(_dt(first), None), ts.process_result_value(_dt(last), None),
              last_seq) for category, count, first, last, last_seq in rows]
    parts += [(category, count, drop.first, drop.last, drop.last_seq)
              for drop in plan.drops for category, count in drop.by_category.items()]
    for category, count, first, last, last_seq in parts:
        plan.by_category[category] = plan.by_category.get(category, 0) + count
        plan.count += count
        plan.first_timestamp = min(filter(None, (plan.first_timestamp, first)), default=None)
        plan.last_timestamp = max(filter(None, (plan.last_timestamp, last)), default=None)
        plan.last_seq = max(filter(None, (plan.last_seq, last_seq)), default=None)
    held = retention.held(_table, holds)
    if held is not None:
        plan.held = session.scalar(select(func.count()).select_from(joined).where(
            _chain.c.seq <= head_seq, retention.past(_table, cutoffs), held, *outside)) or 0
    return plan


def _dt(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def describe_cutoffs(plan: PurgePlan) -> str:
    if plan.older_than_days is not None:
        return f"older than {plan.older_than_days} days"
    return "past each category's retention"
