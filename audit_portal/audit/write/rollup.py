"""The error dashboard's rollup: error events counted per UTC day, fingerprint, error type and severity.

The dashboard's unfiltered views (groups, errors per day, errors without a fingerprint) read this table
(``record.models.ErrorRollup``) instead of aggregating every error event in the log, which grows with the
log (figures: docs/scaling.md). The rollup has one row per (day, fingerprint, error type, severity) that
occurred, so it stays small whatever the log's size.

It counts every event whose status is ERROR, and every change to ``audit_logs`` keeps it in the same
transaction, so that every commit leaves it equal to a count of the events:

* every insert goes through ``inserts.insert_events``: on PostgreSQL the insert and the rollup's upsert are
  one statement (the upsert adds the rows the insert really stored, so a replay that skips known event ids
  adds nothing); on SQLite, whose writers take turns, the days the batch touched are recounted (a cost
  that grows with the day's errors: fine at SQLite's scale);
* bulk loads (``flask demo seed``, COPY) recount the days they loaded, each retention purge batch the days
  it deleted from, and ``flask audit rollup`` everything, with ``rebuild``; the migration that created the
  table counted the events stored before it.

Anything else that writes ``audit_logs`` (hand-written SQL, a restore) must run ``flask audit rollup``.

Empty strings stand for a missing fingerprint, error type or severity (they are part of the primary key);
no stored event has an empty one (``build_event`` turns blank values into NULL).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, func, literal_column, select

from ...timeutil import midnight
from ..record.enums import Status
from ..record.models import ROLLUP_NONE, AuditLog, ErrorRollup

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
    days = [utc_day(event["timestamp"]) for event in events if counts(event) and event.get("timestamp")]
    return (min(days), max(days)) if days else None


def utc_day(value) -> date:
    """The UTC day of a timestamp: an aware datetime, a naive one (SQLite's aggregates: UTC), or ISO text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).date() if value.tzinfo else value.date()


# -- recounting whole days ---------------------------------------------------------------------------------


def _day_of(dialect: str):
    """The UTC day of an audit row's timestamp, in SQL (SQLite stores UTC text: its first ten characters)."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", _logs.c.timestamp))
    return func.substr(_logs.c.timestamp, 1, 10)


def rebuild(connection, first_day: date | None = None, last_day: date | None = None) -> int:
    """Recount the days from ``first_day`` to ``last_day`` (both included; None: no bound) from the audit
    rows, in the caller's transaction. Returns how many rollup rows those days have now.

    Beside concurrent writers: on PostgreSQL the recount first locks the rollup against other writers'
    upserts (SHARE ROW EXCLUSIVE, until the caller commits): it waits for the transactions that already added
    to it, and those that come later wait for it, so every event is counted exactly once, by the recount or by
    its own insert. (Without the lock, a writer that committed between the DELETE and the INSERT below was
    counted twice.) Error events written meanwhile wait that long; the recount of one day takes milliseconds,
    of a whole ten-million-event log a few seconds. On SQLite the DELETE takes the database's write lock."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql(f"LOCK TABLE {_rollup.name} IN SHARE ROW EXCLUSIVE MODE")
    days = []  # the recounted days, in the rollup
    source = select(
        _day_of(dialect), func.coalesce(_logs.c.fingerprint, ROLLUP_NONE), func.coalesce(_logs.c.error_type, ROLLUP_NONE),
        func.coalesce(_logs.c.severity, ROLLUP_NONE), func.count(), func.min(_logs.c.timestamp),
        func.max(_logs.c.timestamp), func.max(_logs.c.id),
    ).where(_logs.c.status == ERROR)
    if first_day is not None:
        days.append(_rollup.c.day >= first_day)
        source = source.where(_logs.c.timestamp >= midnight(first_day))
    if last_day is not None:
        days.append(_rollup.c.day <= last_day)
        source = source.where(_logs.c.timestamp < midnight(last_day + timedelta(days=1)))
    source = source.group_by(literal_column("1"), literal_column("2"), literal_column("3"), literal_column("4"))
    columns = ["day", "fingerprint", "error_type", "severity", "occurrences", "first_seen", "last_seen", "latest_id"]
    connection.execute(delete(_rollup).where(*days))
    connection.execute(_rollup.insert().from_select(columns, source))
    return connection.scalar(select(func.count()).select_from(_rollup).where(*days))
