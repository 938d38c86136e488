"""Bulk loading for large seeds: PostgreSQL COPY, and dropping secondary indexes around a big load."""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from datetime import date, datetime

from sqlalchemy import text

from ...extensions import db
from ..record import partitions
from ..write import rollup
from ..write.store import insert_ignoring_duplicates
from .copytext import event_from_line

log = logging.getLogger(__name__)

#: Indexes that must stay during a load: the primary key and the unique event id.
_KEEP = {"pk_audit_logs", "uq_audit_logs_event_id"}


def copy_chunk(connection, columns: tuple[str, ...], chunk) -> None:
    """Insert a seed chunk's COPY text rows (fields ``columns``) with PostgreSQL's COPY, the months they fall in
    given a partition first."""
    partitions.ensure_months(connection, _months_spanned(chunk.first, chunk.last))
    raw = connection.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.copy_expert(f"COPY audit_logs ({', '.join(columns)}) FROM STDIN", io.StringIO("".join(chunk.lines)),
                           size=_COPY_READ)


#: Characters psycopg2 reads from the chunk's text per message to the server (its default is 8 KiB).
_COPY_READ = 1 << 20


def _months_spanned(first: datetime, last: datetime) -> list[date]:
    """Every month from ``first``'s to ``last``'s."""
    month, months = partitions.month_of(first), []
    while month <= partitions.month_of(last):
        months.append(month)
        month = partitions.next_month(month)
    return months


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




#: From this many events on, a PostgreSQL seed drops the secondary indexes and rebuilds them afterwards.
REBUILD_INDEXES_FROM = 500_000


def load_chunks(chunks: Iterable, columns: tuple[str, ...], count: int, progress=None, say=log.info) -> int:
    """Store the seed rows of ``chunks`` (``seed.Chunk``: COPY text lines with the fields ``columns``), about
    ``count`` of them, a transaction a chunk: PostgreSQL with COPY (around a large load, without its secondary
    indexes), the next chunk made in a thread meanwhile; SQLite through the app's insert path. The error rollup
    is kept, and after a load on PostgreSQL the table is vacuumed and analysed, so that counts run as index-only
    scans at once.

    ``progress()`` makes the context manager that is told of each committed chunk (``update(n)``; the CLI's
    progress bar): it is closed before the finishing steps, which ``say`` reports. Returns how many events were
    stored."""
    postgres = db.engine.dialect.name == "postgresql"
    saved_indexes = []
    if postgres and count >= REBUILD_INDEXES_FROM:
        with db.engine.begin() as connection:
            saved_indexes = drop_secondary_indexes(connection)
        say(f"Dropped {len(saved_indexes)} secondary indexes for the load; they are rebuilt at the end.")
    written = 0
    span = None  # (first, last) timestamp of the rows COPY loaded: the rollup recounts those days
    try:
        with (progress or _NoProgress)() as bar:
            for chunk in (made_ahead(chunks) if postgres else chunks):
                with db.engine.begin() as connection:
                    if postgres:
                        copy_chunk(connection, columns, chunk)
                    else:
                        # The insert path keeps the rollup itself.
                        insert_ignoring_duplicates(connection, [event_from_line(columns, line) for line in chunk.lines])
                if postgres:
                    span = (min(span[0], chunk.first), max(span[1], chunk.last)) if span else (chunk.first, chunk.last)
                written += len(chunk.lines)
                bar.update(len(chunk.lines))
    finally:
        if saved_indexes:
            say("Rebuilding indexes...")
            with db.engine.begin() as connection:
                rebuild_indexes(connection, saved_indexes)
        if span:
            # COPY bypasses the insert path that keeps the error rollup: recount the days it loaded.
            with db.engine.begin() as connection:
                rollup.rebuild(connection, rollup.utc_day(span[0]), rollup.utc_day(span[1]))
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


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def made_ahead(items: Iterable, ahead: int = 2) -> Iterator:
    """Iterate ``items`` while a thread makes the next ones (up to ``ahead``): the seed's rows are made while
    PostgreSQL copies the previous chunk (psycopg2 lets go of the GIL while it waits on the server), so the two
    cores of a small machine both work. An error in the thread is raised here; leaving early stops the thread."""
    made: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                made.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def make():
        try:
            for item in items:
                if not hand_over(item):
                    return
            hand_over(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            hand_over(_Failed(error))

    thread = threading.Thread(target=make, name="seed-rows", daemon=True)
    thread.start()
    try:
        while (item := made.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def vacuum_analyze() -> None:
    """``VACUUM (ANALYZE) audit_logs`` (PostgreSQL; outside a transaction, as VACUUM must be): a fresh load
    leaves the visibility map unset, and until a vacuum sets it a bounded count reads the heap."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE) audit_logs")
