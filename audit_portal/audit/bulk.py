"""Bulk loading for large seeds: PostgreSQL COPY, and dropping secondary indexes around a big load."""

from __future__ import annotations

import csv
import io
import json
import logging

from sqlalchemy import text

from .models import EVENT_COLUMNS

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
    """Insert ``events`` with PostgreSQL's COPY (several times faster than INSERT for big batches)."""
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
    return [definition for _, definition in saved]


#: Memory for each index build of a rebuild (PostgreSQL's default of 64 MB makes the sorts of a
#: ten-million-row build spill to disk over and over); only for this transaction.
REBUILD_MAINTENANCE_WORK_MEM = "512MB"


def rebuild_indexes(connection, definitions: list[str]) -> None:
    connection.execute(text(f"SET LOCAL maintenance_work_mem = '{REBUILD_MAINTENANCE_WORK_MEM}'"))
    for definition in definitions:
        connection.execute(text(definition))
    connection.execute(text("ANALYZE audit_logs"))


