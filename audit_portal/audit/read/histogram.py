"""Events per time bucket for a query, by status: the histogram above the viewer's list and its API.

The range is the query's own (``date_from``/``date_to`` and its ``created:`` terms), or the last 30 days,
cut into equal buckets. It stays fast at any size the way the counts do (``query.count_bounded``): first a
count that stops at AUDIT_HISTOGRAM_EXACT_LIMIT matching rows. Up to that, every matching event is bucketed
and the counts are exact (grouped by PostgreSQL; bucketed here on SQLite). Past it, each bucket reads at
most its share of that limit along the timestamp index, from the bucket's start (PostgreSQL: one lateral
subquery, planned once): a bucket that holds no more is exact, a fuller one is estimated from the rate of
its first events (its total = share / (fraction of the bucket they cover), split by status as they are) and
marked so. The answer then says ``exact: false`` and the page says the bars are estimates.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import func, literal, select, true, union_all

from ...replica import replica_first
from ...timeutil import utcnow
from ..record.enums import Status
from ..record.models import AuditLog
from .query import AuditFilters, AuditLogRepository, apply_filters
from .search import created_range

DEFAULT_BUCKETS, MAX_BUCKETS = 50, 200
DEFAULT_SPAN = timedelta(days=30)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
STATUSES = tuple(Status.values())
#: The least share of a bucket its first events may cover for an estimate: a burst right at a bucket's start
#: would otherwise stand for an absurd rate (it still inflates that bar, which is marked as estimated). At ten
#: million events a month, a 14-hour bar's first 201 events cover about 0.1 % of it.
_MIN_COVER = 0.0001


@dataclass
class Bucket:
    start: datetime
    end: datetime
    counts: dict[str, int]
    exact: bool = True

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Histogram:
    buckets: list[Bucket]
    exact: bool
    start: datetime
    end: datetime
    #: How many events of a bucket are read before it is estimated (None: every bucket is exact).
    sampled_per_bucket: int | None = None

    @property
    def total(self) -> int:
        return sum(b.total for b in self.buckets)

    @property
    def peak(self) -> int:
        return max((b.total for b in self.buckets), default=0)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shift(moment: datetime, span: timedelta) -> datetime:
    """``moment + span``, kept within the years Python can hold."""
    try:
        return moment + span
    except OverflowError:
        return LATEST if span > timedelta(0) else EARLIEST


def time_range(filters: AuditFilters, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) the histogram covers: the query's range, closed with now (or 30 days after its start, for
    a start in the future) and 30 days before its end. Empty (start == end) when the query's own bounds
    exclude each other."""
    now = now or utcnow()
    now = now.replace(second=0, microsecond=0) + timedelta(minutes=1)  # whole minutes: readable bucket edges
    low, high = created_range(filters.q) if filters.q else (None, None)
    starts = [m for m in (filters.date_from, low) if m is not None]
    ends = [m for m in (filters.date_to, high) if m is not None]
    start = max(starts) if starts else None
    end = min(ends) if ends else (now if start is None or start < now else _shift(start, DEFAULT_SPAN))
    if start is None:
        start = _shift(end, -DEFAULT_SPAN)
    return (start, end) if start < end else (end, end)


@replica_first
def histogram(filters: AuditFilters, buckets: int = DEFAULT_BUCKETS, now: datetime | None = None, *,
              session) -> Histogram:
    """The events matching ``filters`` per bucket and status (see the module's docstring), from the read replica
    when it is in use (``audit_portal/replica.py``)."""
    start, end = time_range(filters, now)
    if start == end:  # created:>=X with date_to before X, say: nothing can match
        return Histogram([], True, start, end)
    edges = [start + (end - start) * i / buckets for i in range(buckets)] + [end]
    within = replace(filters, date_from=start, date_to=end)
    limit = current_app.config["AUDIT_HISTOGRAM_EXACT_LIMIT"]
    counted, small = AuditLogRepository(session).count_bounded(within, bound=limit)  # lower: search, reads_rows
    if small:
        counts = _exact_counts(session, within, edges)
        return Histogram([_bucket(edges, i, counts[i]) for i in range(buckets)], True, start, end)
    share = max(min(counted // buckets, current_app.config["AUDIT_HISTOGRAM_SAMPLE"]), 20)
    return Histogram(_sampled(session, filters, edges, share), False, start, end, share)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _exact_counts(session, within: AuditFilters, edges: list[datetime]) -> list[Counter]:
    """Every matching event counted into its bucket: on PostgreSQL grouped by the database (exact numeric
    arithmetic on microseconds), elsewhere (SQLite) bucketed here from the rows."""
    n = len(edges) - 1
    counts = [Counter() for _ in range(n)]
    if session.get_bind().dialect.name == "postgresql":
        start_us, width_us = _micros(edges[0]), _micros(edges[-1]) - _micros(edges[0])
        micros = func.extract("epoch", AuditLog.timestamp) * 1_000_000 - start_us
        bucket = func.floor(micros * n / width_us).label("bucket")
        query = apply_filters(select(bucket, AuditLog.status, func.count()), within).group_by(bucket, AuditLog.status)
        for index, status, count in session.execute(query):
            counts[min(max(int(index), 0), n - 1)][status] += count
        return counts
    for timestamp, status in session.execute(apply_filters(select(AuditLog.timestamp, AuditLog.status), within)):
        counts[min(bisect_right(edges, _aware(timestamp)) - 1, n - 1)][status] += 1
    return counts


def _bucket(edges: list[datetime], i: int, counts: Counter, exact: bool = True) -> Bucket:
    return Bucket(edges[i], edges[i + 1], {s: int(counts.get(s, 0)) for s in STATUSES}, exact)


def _sampled(session, filters: AuditFilters, edges: list[datetime], share: int) -> list[Bucket]:
    """Each bucket's first ``share + 1`` matching events, counted by status in the database (one statement):
    counted exactly when there are no more, else extrapolated from the time they cover."""
    statement = (_sampled_lateral(filters, edges, share) if session.get_bind().dialect.name == "postgresql"
                 else _sampled_union(filters, edges, share))
    seen: dict[int, list[tuple[str, int, datetime]]] = {}
    for bucket, status, count, last in session.execute(statement):
        seen.setdefault(bucket, []).append((status, count, _aware(last)))
    out = []
    for i in range(len(edges) - 1):
        rows = seen.get(i, [])
        counts = Counter({status: count for status, count, _ in rows})
        if sum(counts.values()) <= share:
            out.append(_bucket(edges, i, counts))
            continue
        last = max(moment for _, _, moment in rows)
        covered = (last - edges[i]) / (edges[i + 1] - edges[i])
        scale = 1 / max(covered, _MIN_COVER)
        out.append(_bucket(edges, i, Counter({s: round(n * scale) for s, n in counts.items()}), exact=False))
    return out


def _sampled_lateral(filters: AuditFilters, edges: list[datetime], share: int):
    """PostgreSQL: one lateral subquery run once per bucket (planned once, not once per bucket)."""
    n, width = len(edges) - 1, (edges[-1] - edges[0]) / (len(edges) - 1)
    series = func.generate_series(0, n - 1).table_valued("i").render_derived()
    low = literal(edges[0], AuditLog.timestamp.type) + series.c.i * literal(width)
    first = (apply_filters(select(AuditLog.timestamp, AuditLog.status), filters)
             .where(AuditLog.timestamp >= low, AuditLog.timestamp < low + literal(width))
             .order_by(AuditLog.timestamp).limit(share + 1).lateral())
    return (select(series.c.i, first.c.status, func.count(), func.max(first.c.timestamp))
            .select_from(series.join(first, true())).group_by(series.c.i, first.c.status))


def _sampled_union(filters: AuditFilters, edges: list[datetime], share: int):
    """Other databases (SQLite): a subquery per bucket, in one UNION ALL."""
    parts = []
    for i in range(len(edges) - 1):
        first = apply_filters(select(AuditLog.timestamp, AuditLog.status),
                              replace(filters, date_from=edges[i], date_to=edges[i + 1]))
        first = first.order_by(AuditLog.timestamp).limit(share + 1).subquery()
        parts.append(select(literal(i).label("bucket"), first.c.status, func.count(), func.max(first.c.timestamp))
                     .group_by(first.c.status))
    return union_all(*parts)
