"""The error dashboard's rollup: error events counted per UTC day, fingerprint, error type and severity.

The dashboard's unfiltered views (groups, errors per day, errors without a fingerprint) read this table
instead of aggregating every error event in the log: at 10,000,000 events (1,000,000 errors) aggregating
took about a second per page, and it grew with the log (docs/scaling.md). The rollup has one row per
(day, fingerprint, error type, severity) that occurred, so it stays small whatever the log's size.

It counts every event whose status is ERROR, and it is exact, never "eventually" right:

* every insert into ``audit_logs`` goes through ``inserts.insert_events``, which keeps the rollup in the
  same transaction: on PostgreSQL the insert and the rollup's upsert are one statement (the upsert adds
  the rows the insert really stored, so a replay that skips known event ids adds nothing); on SQLite,
  whose writers take turns, the days the batch touched are recounted;
* bulk loads (``flask demo seed``), the migration that created the table, the retention purge and
  ``flask audit rollup`` recount whole days with ``rebuild``.

Empty strings stand for a missing fingerprint, error type or severity (they are part of the primary key);
no stored event has an empty one (``build_event`` turns blank values into NULL).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import BigInteger, Date, Index, String, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import UTCDateTime
from .enums import Status
from .models import ERROR_TYPE_MAX, AuditLog, IdType

NONE = ""  #: the key value of a missing fingerprint, error type or severity


class ErrorRollup(db.Model):
    """How many ERROR events share one UTC day, fingerprint, error type and severity."""

    __tablename__ = "audit_error_rollup"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    error_type: Mapped[str] = mapped_column(String(ERROR_TYPE_MAX), primary_key=True)
    severity: Mapped[str] = mapped_column(String(16), primary_key=True)
    occurrences: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The highest ``audit_logs.id`` counted here: the newest occurrence, which the dashboard shows.
    latest_id: Mapped[int] = mapped_column(IdType)


#: One fingerprint's days (the dashboard's view of one error group).
Index("ix_audit_error_rollup_fingerprint_day", ErrorRollup.fingerprint, ErrorRollup.day)

_rollup = ErrorRollup.__table__
_logs = AuditLog.__table__
ERROR = Status.ERROR.value


def counts(event: dict) -> bool:
    """Whether ``event`` (a dict of audit columns) is one the rollup counts."""
    status = event.get("status")
    return getattr(status, "value", status) == ERROR


# -- kept by every insert (inserts.insert_events) ----------------------------------------------------------

#: Appended to a PostgreSQL INSERT into audit_logs wrapped as ``WITH inserted AS (<insert> <this>``: the
#: rows the insert stored (with ON CONFLICT DO NOTHING, only the new ones) are added to the rollup by the same
#: statement. Rows are upserted in key order, so two concurrent batches lock rollup rows in the same order
#: and cannot deadlock.
PG_UPSERT_FROM_INSERTED = f"""
 RETURNING id, "timestamp", status, fingerprint, error_type, severity)
INSERT INTO {_rollup.name} AS r (day, fingerprint, error_type, severity, occurrences, first_seen, last_seen,
                                 latest_id)
SELECT ("timestamp" AT TIME ZONE 'UTC')::date, coalesce(fingerprint, ''), coalesce(error_type, ''),
       coalesce(severity, ''), count(*), min("timestamp"), max("timestamp"), max(id)
FROM inserted WHERE status = '{ERROR}'
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
ON CONFLICT (day, fingerprint, error_type, severity) DO UPDATE SET
    occurrences = r.occurrences + EXCLUDED.occurrences,
    first_seen = LEAST(r.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(r.last_seen, EXCLUDED.last_seen),
    latest_id = GREATEST(r.latest_id, EXCLUDED.latest_id)"""  # noqa: S608 - names from the models


def event_days(events: list[dict]) -> tuple[date, date] | None:
    """The first and last UTC day of the counted events among ``events`` (None: there are none)."""
    days = [_utc_day(event["timestamp"]) for event in events if counts(event) and event.get("timestamp")]
    return (min(days), max(days)) if days else None


def _utc_day(value) -> date:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).date() if value.tzinfo else value.date()


# -- recounting whole days ---------------------------------------------------------------------------------


def _day_of(dialect: str):
    """The UTC day of an audit row's timestamp, in SQL (SQLite stores UTC text: its first ten characters)."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", _logs.c.timestamp))
    return func.substr(_logs.c.timestamp, 1, 10)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def rebuild(connection, first_day: date | None = None, last_day: date | None = None) -> int:
    """Recount the days from ``first_day`` to ``last_day`` (both included; None: no bound) from the audit
    rows, in the caller's transaction. Returns how many rollup rows those days have now.

    Safe beside concurrent writers on PostgreSQL (read committed): rows committed before the recount's
    snapshot are counted by it; a writer still in flight adds its own rows to the recounted ones through
    the same upsert the recount uses."""
    dialect = connection.dialect.name
    day = _day_of(dialect)
    wanted = delete(_rollup)
    source = select(
        day, func.coalesce(_logs.c.fingerprint, NONE), func.coalesce(_logs.c.error_type, NONE),
        func.coalesce(_logs.c.severity, NONE), func.count(), func.min(_logs.c.timestamp),
        func.max(_logs.c.timestamp), func.max(_logs.c.id),
    ).where(_logs.c.status == ERROR)
    if first_day is not None:
        wanted = wanted.where(_rollup.c.day >= first_day)
        source = source.where(_logs.c.timestamp >= midnight(first_day))
    if last_day is not None:
        wanted = wanted.where(_rollup.c.day <= last_day)
        source = source.where(_logs.c.timestamp < midnight(last_day + timedelta(days=1)))
    source = source.group_by(literal_column("1"), literal_column("2"), literal_column("3"), literal_column("4"))
    columns = ["day", "fingerprint", "error_type", "severity", "occurrences", "first_seen", "last_seen", "latest_id"]
    connection.execute(wanted)
    if dialect == "postgresql":
        statement = pg_insert(_rollup).from_select(columns, source.order_by(literal_column("1"), literal_column("2"),
                                                                             literal_column("3"), literal_column("4")))
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["day", "fingerprint", "error_type", "severity"],
            set_={"occurrences": _rollup.c.occurrences + excluded.occurrences,
                  "first_seen": func.least(_rollup.c.first_seen, excluded.first_seen),
                  "last_seen": func.greatest(_rollup.c.last_seen, excluded.last_seen),
                  "latest_id": func.greatest(_rollup.c.latest_id, excluded.latest_id)},
        )
    else:
        # SQLite: the caller's transaction holds the write lock from the DELETE on, so nobody else adds rows.
        statement = _rollup.insert().from_select(columns, source)
    connection.execute(statement)
    query = select(func.count()).select_from(_rollup)
    if first_day is not None:
        query = query.where(_rollup.c.day >= first_day)
    if last_day is not None:
        query = query.where(_rollup.c.day <= last_day)
    return connection.scalar(query)
