"""The error dashboard's numbers: errors grouped by fingerprint (as Sentry does) and errors per day.

Without filters that need the events themselves, they come from the rollup (``write/rollup.py`` keeps it: a few rows per
day, whatever the log's size); with them (a user, an action, a search, a time of day in a date range, ...)
they are aggregated from the matching events. Both give the same numbers (tests compare them); the one
difference is an event stamped in the future (a server's clock ahead), which the rollup counts in its day
and the events' count leaves out until its time comes. They read from the read replica when it is in use
(``audit_portal/replica.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, literal_column, select

from ...replica import replica_first
from ...timeutil import midnight, utcnow
from ..record.enums import ErrorSeverity, Status
from ..record.models import ROLLUP_NONE, AuditLog, ErrorRollup
from .query import AuditFilters, AuditLogRepository, apply_filters

SEVERITY_ORDER = [ErrorSeverity.CRITICAL.value, ErrorSeverity.ERROR.value, ErrorSeverity.WARNING.value]


@dataclass
class ErrorGroup:
    fingerprint: str | None
    error_type: str | None
    count: int
    first_seen: datetime
    last_seen: datetime
    latest: AuditLog  #: the newest occurrence: its description, location and severity stand for the group


#: The filters the rollup can answer: whole UTC days, severity, error type, fingerprint, and the status ERROR
#: (which the dashboard always sets).
_ROLLUP_FILTERS = frozenset({"date_from", "date_to", "status", "severity", "error_type", "fingerprint"})


def from_rollup(filters: AuditFilters) -> bool:
    """Whether the rollup can answer for ``filters`` (else the events are aggregated)."""
    if filters.status != Status.ERROR.value:  # the rollup counts ERROR events only (the dashboard's own filter)
        return False
    if any(value not in (None, "") and name not in _ROLLUP_FILTERS for name, value in asdict(filters).items()):
        return False
    return all(moment is None or moment == midnight(moment.astimezone(UTC).date())
               for moment in (filters.date_from, filters.date_to))


def _rollup_where(query, filters: AuditFilters):
    if filters.date_from is not None:
        query = query.where(ErrorRollup.day >= filters.date_from.astimezone(UTC).date())
    if filters.date_to is not None:  # exclusive, and a midnight: the day before is the last one
        query = query.where(ErrorRollup.day < filters.date_to.astimezone(UTC).date())
    for name in ("severity", "error_type", "fingerprint"):
        value = getattr(filters, name)
        if value is not None:
            query = query.where(getattr(ErrorRollup, name) == value)
    return query


def _grouped_rollup(filters: AuditFilters):
    return _rollup_where(
        select(
            ErrorRollup.fingerprint,
            ErrorRollup.error_type,
            func.sum(ErrorRollup.occurrences).label("occurrences"),
            func.min(ErrorRollup.first_seen).label("first_seen"),
            func.max(ErrorRollup.last_seen).label("last_seen"),
            func.max(ErrorRollup.latest_id).label("latest_id"),
            func.count().over().label("groups"),
        ),
        filters,
    ).where(ErrorRollup.fingerprint != ROLLUP_NONE).group_by(ErrorRollup.fingerprint, ErrorRollup.error_type)


def _grouped_errors(filters: AuditFilters):
    """Only error events with a fingerprint (those the exception handler and ``log_error`` record) form
    groups: a failed request's own ERROR row (no stack trace) would count each crash twice."""
    return apply_filters(
        select(
            AuditLog.fingerprint,
            AuditLog.error_type,
            func.count().label("occurrences"),
            func.min(AuditLog.timestamp).label("first_seen"),
            func.max(AuditLog.timestamp).label("last_seen"),
            func.max(AuditLog.id).label("latest_id"),
            func.count().over().label("groups"),  # the number of groups, from the same pass over the rows
        ),
        filters,
    ).where(AuditLog.fingerprint.is_not(None)).group_by(AuditLog.fingerprint, AuditLog.error_type)


@replica_first
def error_groups(filters: AuditFilters, skip: int = 0, limit: int = 50, *, session) -> tuple[list[ErrorGroup], int]:
    """Groups of matching error events, most recently seen first, and how many groups there are."""
    grouped = _grouped_rollup(filters) if from_rollup(filters) else _grouped_errors(filters)
    newest_first = (literal_column("last_seen").desc(), grouped.selected_columns.fingerprint)
    rows = session.execute(grouped.order_by(*newest_first).offset(skip).limit(limit)).all()
    if rows:
        total = rows[0].groups
    else:  # past the last page: count on its own
        total = session.scalar(select(func.count()).select_from(grouped.subquery())) if skip else 0
    latest = AuditLogRepository(session).get_many(r.latest_id for r in rows)
    groups = [
        ErrorGroup(r.fingerprint, r.error_type or None, int(r.occurrences), _aware(r.first_seen), _aware(r.last_seen),
                   latest[r.latest_id])
        for r in rows
        if r.latest_id in latest  # else a retention purge deleted the group between the two queries
    ]
    return groups, total


@replica_first
def error_group(filters: AuditFilters, *, session) -> ErrorGroup | None:
    """The one group ``filters.fingerprint`` names (within the other filters), or None when nothing matches."""
    groups, _ = error_groups(filters, 0, 1, session=session)
    return groups[0] if groups else None


@replica_first
def occurrences(filters: AuditFilters, skip: int = 0, limit: int = 50, *, session) -> list[AuditLog]:
    """One page of a group's events (``filters.fingerprint``), newest first."""
    return AuditLogRepository(session).get_all(filters, skip, limit)


@replica_first
def errors_without_fingerprint(filters: AuditFilters, bound: int = 1000, *, session) -> tuple[int, bool]:
    """(count, exact): matching ERROR events that belong to no group (failed requests' own rows, audit
    failures), counted up to ``bound`` so that a large log is not scanned for a footnote (the rollup's count
    is exact and costs nothing)."""
    if from_rollup(filters):
        total = _rollup_where(select(func.coalesce(func.sum(ErrorRollup.occurrences), 0)), filters)
        return int(session.scalar(total.where(ErrorRollup.fingerprint == ROLLUP_NONE))), True
    ids = apply_filters(select(AuditLog.id), filters).where(AuditLog.fingerprint.is_(None)).limit(bound + 1)
    count = session.scalar(select(func.count()).select_from(ids.subquery()))
    return (count, True) if count <= bound else (bound, False)


def _aware(value):
    # Aggregates bypass the column type on SQLite and come back as text or naive datetimes.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return AuditLog.timestamp.type.process_result_value(value, None)


def _day(dialect: str):
    """The UTC day of an event, as a grouping key (``_day_key`` turns it into ``YYYY-MM-DD``)."""
    if dialect == "postgresql":
        # Bins of one day from a UTC midnight: cheaper per row than formatting each timestamp with
        # to_char(timezone('UTC', ...)) (docs/performance.md, docs/scaling.md), and the chart reads every error
        # in its range.
        return func.date_bin(literal_column("interval '1 day'"), AuditLog.timestamp,
                             literal_column("timestamptz '2000-01-01 00:00:00+00'"))
    return func.substr(AuditLog.timestamp, 1, 10)


def _day_key(value) -> str:
    """``YYYY-MM-DD`` of what ``_day`` returned (a UTC-midnight timestamp on PostgreSQL, text on SQLite)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date().isoformat()
    return str(value)[:10]


@dataclass
class DailyCounts:
    days: list[date]
    #: severity -> counts per day, in the order of ``days``
    series: dict[str, list[int]]

    @property
    def peak(self) -> int:
        return max((sum(day) for day in zip(*self.series.values(), strict=True)), default=0)

    @property
    def total(self) -> int:
        return sum(sum(counts) for counts in self.series.values())


@replica_first
def errors_per_day(filters: AuditFilters, default_days: int = 30, *, session) -> DailyCounts:
    """Matching errors per UTC day and severity, over the filtered range (by default the last 30 whole days
    and today so far; at most 366 days)."""
    end = (filters.date_to or utcnow() + timedelta(seconds=1))
    start = filters.date_from or midnight((end - timedelta(days=default_days)).date())
    if (end - start).days > 366:
        start = midnight((end - timedelta(days=366)).date())
    days = [start.date() + timedelta(days=i) for i in range((end - timedelta(microseconds=1)).date().toordinal()
                                                           - start.date().toordinal() + 1)]
    if not days:  # a range that ends before it starts (a date_from in the future)
        return DailyCounts([], {sev: [] for sev in SEVERITY_ORDER})
    if from_rollup(filters):
        query = (_rollup_where(select(ErrorRollup.day, ErrorRollup.severity, func.sum(ErrorRollup.occurrences)),
                               replace(filters, date_from=None, date_to=None))
                 .where(ErrorRollup.fingerprint != ROLLUP_NONE, ErrorRollup.day.between(days[0], days[-1]))
                 .group_by(ErrorRollup.day, ErrorRollup.severity))
    else:
        scoped = replace(filters, date_from=start, date_to=end)
        day = _day(session.get_bind().dialect.name).label("day")
        query = (apply_filters(select(day, AuditLog.severity, func.count()), scoped)
                 .where(AuditLog.fingerprint.is_not(None)).group_by(day, AuditLog.severity))
    counts = {(_day_key(row[0]), row[1]): int(row[2]) for row in session.execute(query)}
    series = {sev: [counts.get((d.isoformat(), sev), 0) for d in days] for sev in SEVERITY_ORDER}
    return DailyCounts(days, series)
