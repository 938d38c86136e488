"""Writing event rows to ``audit_logs``: one INSERT statement per call, however many rows it carries.

Both write paths end here: the background writer's batches (``ignore_duplicates=True``: replays skip the
event ids already stored) and the domain event that commits with its change (on the caller's connection,
inside its transaction).

On PostgreSQL the rows travel as one JSON parameter that the server expands with
``json_populate_recordset``. SQLAlchemy's own insert binds every column of every row in Python: about
0.08 ms of CPU per row in a batch and 0.23 ms for a single row in a transaction, against 0.02 and 0.11 ms
this way, and the server parses one parameter instead of 23 per row (``bench/insert_paths.py``,
docs/performance.md). Elsewhere (SQLite) the SQLAlchemy Core insert is used.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import insert

from .models import EVENT_COLUMNS, AuditLog

_table = AuditLog.__table__
#: One statement object for SQLAlchemy's path: it is compiled once and its cached form reused.
_CORE_INSERT = insert(_table)

_COLUMN_LIST = ", ".join(f'"{name}"' for name in EVENT_COLUMNS)
#: Every column of the row type is filled from the JSON object's key of the same name (a missing key is NULL);
#: ``id`` is not selected, so it comes from its sequence. (Names from the model, not from input.)
_PG_INSERT = (f"INSERT INTO {_table.name} ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} "  # noqa: S608
              f"FROM json_populate_recordset(NULL::{_table.name}, %s)")
_PG_INSERT_IGNORING_DUPLICATES = _PG_INSERT + " ON CONFLICT (event_id) DO NOTHING"


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()  # events carry aware timestamps: the offset is part of the text
    raise TypeError(f"an audit event field of type {type(value).__name__} is not JSON serialisable")


#: Event values are JSON types already (``build_event`` redacts metadata into JSON types), plus the timestamp.
#: No ASCII escaping: the text goes to the server as UTF-8, as the columns store it.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_value).encode


def insert_events(connection, events: list[dict], *, ignore_duplicates: bool = False) -> None:
    """Insert ``events`` (dicts of ``EVENT_COLUMNS``) on ``connection``, in its current transaction.

    ``ignore_duplicates``: rows whose ``event_id`` is already stored are skipped (replays are idempotent).
    Database errors are raised as SQLAlchemy errors, as any other statement's are."""
    if not events:
        return
    dialect = connection.dialect.name
    if dialect == "postgresql":
        statement = _PG_INSERT_IGNORING_DUPLICATES if ignore_duplicates else _PG_INSERT
        connection.exec_driver_sql(statement, (_encode(events),))
        return
    if not ignore_duplicates:
        connection.execute(_CORE_INSERT, events)
        return
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(_table).on_conflict_do_nothing(index_elements=["event_id"])
        # RETURNING makes SQLAlchemy send the batch as multi-row INSERT ... VALUES statements
        # ("insertmanyvalues"); without it a batch goes through executemany, a statement per row.
        # (SQLite before 3.35 has no RETURNING: there the batch goes row by row.)
        if connection.dialect.insert_executemany_returning:
            statement = statement.returning(_table.c.id)
        connection.execute(statement, events)
        return
    # pragma: no cover - only PostgreSQL and SQLite are supported
    for event in events:
        if not connection.execute(_table.select().where(_table.c.event_id == event["event_id"])).first():
            connection.execute(_CORE_INSERT, [event])
