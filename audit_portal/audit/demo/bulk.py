"""Bulk loading for large seeds: PostgreSQL COPY, and dropping secondary indexes around a big load."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator

from sqlalchemy import text

from ...extensions import db
from ..record import partitions
from ..record.models import EVENT_COLUMNS
from ..write import rollup
from ..write.store import insert_ignoring_duplicates

log = logging.getLogger(__name__)

#: Indexes that must stay during a load: the primary key and the unique event id.
_KEEP = {"pk_audit_logs", "uq_audit_logs_event_id"}


def _csv_value(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def copy_events(connection, events: list[dict]) -> None:
    """Insert ``events`` with PostgreSQL's COPY (several times faster than INSERT for big batches), their months'
    partitions made first."""
    partitions.ensure_for_events(connection, events)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for event in events:
        writer.writerow(["" if (v := _csv_value(event[c])) is None else v for c in EVENT_COLUMNS])
    buffer.seek(0)
    raw = connection.connection.dbapi_connection
    with raw.cursor() as cursor:
        # An empty unquoted field is NULL; the csv module quotes empty strings, so they stay strings.
        cursor.copy_expert(f"COPY audit_logs ({', '.join(EVENT_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)


def drop_secondary_indexes(connection) -> list[str]:
    """Drop audit_logs' secondary indexes; return their definitions so they can be rebuilt."""
    rows = connection.execute(text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_logs'")).all()
    saved = [(name, definition) for name, definition in rows if name not in _KEEP]
    for name, _ in saved:
        connection.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    # A partitioned index's definition reads "ON ONLY audit_logs" (the parent alone): rebuilt as such it would
    # stay invalid, without its partitions' indexes.
    return [definition.replace(" ON ONLY ", " ON ", 1) for _, definition in saved]


#: Memory for each index build of a rebuild (PostgreSQL's default of 64 MB makes the sorts of a
#: ten-million-row build spill to disk over and over); only for this transaction.
REBUILD_MAINTENANCE_WORK_MEM = "512MB"


def rebuild_indexes(connection, definitions: list[str]) -> None:
    """Build the indexes ``drop_secondary_indexes`` dropped (the load's VACUUM (ANALYZE) then analyses)."""
    connection.execute(text(f"SET LOCAL maintenance_work_mem = '{REBUILD_MAINTENANCE_WORK_MEM}'"))
    for definition in definitions:
        connection.execute(text(definition))




#: Events per transaction of a seed.
SEED_BATCH = 5000
#: From this many events on, a PostgreSQL seed drops the secondary indexes and rebuilds them afterwards.
REBUILD_INDEXES_FROM = 500_000


def load_events(events: Iterable[dict], count: int, progress=None, say=log.info) -> int:
    """Store ``count`` events from ``events`` in batches: PostgreSQL with COPY (around a large load, without
    its secondary indexes), SQLite through the app's insert path. The error rollup is kept, and after a load on
    PostgreSQL the table is vacuumed and analysed, so that counts run as index-only scans at once.

    ``progress()`` makes the context manager that is told of each batch (``update(n)``; the CLI's progress
    bar): it is closed before the finishing steps, which ``say`` reports. Returns how many events were stored."""
    postgres = db.engine.dialect.name == "postgresql"
    saved_indexes = []
    if postgres and count >= REBUILD_INDEXES_FROM:
        with db.engine.begin() as connection:
            saved_indexes = drop_secondary_indexes(connection)
        say(f"Dropped {len(saved_indexes)} secondary indexes for the load; they are rebuilt at the end.")
    written = 0
    days: list = []  # UTC days of the error events COPY loaded: the rollup recounts from the first to the last
    try:
        with (progress or _NoProgress)() as bar:
            for batch in _batches(events, SEED_BATCH):
                with db.engine.begin() as connection:
                    if postgres:
                        copy_events(connection, batch)
                        days.extend(rollup.event_days(batch) or ())
                    else:
                        insert_ignoring_duplicates(connection, batch)  # keeps the rollup itself
                written += len(batch)
                bar.update(len(batch))
    finally:
        if saved_indexes:
            say("Rebuilding indexes...")
            with db.engine.begin() as connection:
                rebuild_indexes(connection, saved_indexes)
        if days:
            # COPY bypasses the insert path that keeps the error rollup: recount the days it loaded.
            with db.engine.begin() as connection:
                rollup.rebuild(connection, min(days), max(days))
    if postgres and written:
        say("Vacuuming and analysing audit_logs...")
        vacuum_analyze()
    return written


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def update(self, n: int) -> None:
        pass


def _batches(events: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch = []
    for event in events:
        batch.append(event)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def vacuum_analyze() -> None:
    """``VACUUM (ANALYZE) audit_logs`` (PostgreSQL; outside a transaction, as VACUUM must be): a fresh load
    leaves the visibility map unset, and until a vacuum sets it a bounded count reads the heap."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE) audit_logs")
