"""Writing rows to ``audit_logs`` and ``audit_chain``: one INSERT statement per call, however many rows.

Error events also update the error dashboard's rollup (``rollup.py``) in the same transaction: on PostgreSQL
within the same statement, on SQLite by recounting their days after the insert.

The audit rows written here: the background writer's batches (``ignore_duplicates=True``: replays skip the
event ids already stored), the domain event that commits with its change (on the caller's connection,
inside its transaction), checkpoints, the retention purge's own event and the demo seed on SQLite; and
every link of the hash chain.

On PostgreSQL the statements bypass SQLAlchemy's compiled inserts, which bind every column of every row in
Python: several rows travel as one JSON parameter that the server expands with ``json_populate_recordset``
(less app CPU per row, and a little less for the server than parsing a multi-row VALUES list); a single event
(above all the domain event in its change's transaction; also a writer batch of one) is a plain ``VALUES``
with the driver's own parameters (planning the JSON expansion would cost the server more than it saves for
one row). Chain links always go as JSON: the sealer writes them in batches. Figures: ``bench/insert_paths.py``
and docs/performance.md. Elsewhere (SQLite) the SQLAlchemy Core insert is used.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..record import partitions
from ..record.models import EVENT_COLUMNS, EVENT_ID_CONFLICT, AuditChainLink, AuditLog
from . import rollup

_table = AuditLog.__table__
_chain = AuditChainLink.__table__
#: One statement object per table for SQLAlchemy's path: each is compiled once and its cached form reused.
_CORE_INSERT = insert(_table)
_CORE_INSERT_LINKS = insert(_chain)


def _quoted(columns) -> str:
    return ", ".join(f'"{name}"' for name in columns)


def _pg_insert(table, columns) -> str:
    """``INSERT INTO table (columns) SELECT columns FROM json_populate_recordset(NULL::table, %s)``: each column
    is filled from the JSON object's key of the same name (a missing key is NULL); a column left out (the
    audit row's ``id``) comes from its default. Names come from the models, never from input."""
    names = _quoted(columns)
    return f"INSERT INTO {table.name} ({names}) SELECT {names} FROM json_populate_recordset(NULL::{table.name}, %s)"  # noqa: S608


#: A replayed event keeps its event id and its timestamp (the partition key, part of the unique key on PostgreSQL).
_IGNORE_DUPLICATES = f" ON CONFLICT ({_quoted(EVENT_ID_CONFLICT['postgresql'])}) DO NOTHING"
_PG_INSERT = _pg_insert(_table, EVENT_COLUMNS)
_PG_INSERT_LINKS = _pg_insert(_chain, [column.name for column in _chain.columns])
#: One row, driver parameters by name (``%(event_id)s``): psycopg2 adapts them in C.
_PG_INSERT_ONE = (f"INSERT INTO {_table.name} ({_quoted(EVENT_COLUMNS)}) "  # noqa: S608
                  f"VALUES ({', '.join(f'%({name})s' for name in EVENT_COLUMNS)})")


def _utc(value):
    """A time as UTC; a naive one is refused (as the ``UTCDateTime`` column type refuses it): the server would
    read it in its session's time zone."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetimes are not stored; give a timezone-aware UTC datetime")
    return value.astimezone(UTC)


def _json_value(value):
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    raise TypeError(f"an audit event field of type {type(value).__name__} is not JSON serialisable")


def _defaults(table) -> dict:
    return {c.name: c.default.arg for c in table.columns if c.default is not None and c.default.is_scalar}


#: Python-side column defaults (``description`` "", ``is_sensitive`` False; a link's ``late`` False):
#: SQLAlchemy's insert fills them in for a missing key, and so must these statements (``build_event`` always
#: gives every key; older spool lines or hand-made events may not).
_EVENT_DEFAULTS = _defaults(_table)
_LINK_DEFAULTS = _defaults(_chain)


def _complete(row: dict, defaults: dict) -> dict:
    return row if defaults.keys() <= row.keys() else {**defaults, **row}


#: Event values are JSON types already (``build_event`` redacts metadata into JSON types), plus the timestamp.
#: No ASCII escaping: the text goes to the server as UTF-8, as the columns store it.
encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_value).encode


def insert_events(connection, events: list[dict], *, ignore_duplicates: bool = False) -> None:
    """Insert ``events`` (dicts of ``EVENT_COLUMNS``) on ``connection``, in its current transaction.

    ``ignore_duplicates``: rows whose ``event_id`` is already stored are skipped (replays are idempotent).
    Database errors are raised as SQLAlchemy errors, as any other statement's are; a value that cannot be
    sent at all (a naive datetime, a non-JSON type) as ``ValueError`` or ``TypeError``. On PostgreSQL the months
    the events fall in get their partitions first, if they have none (``partitions.ensure_for_events``)."""
    if not events:
        return
    if connection.dialect.name == "postgresql":
        partitions.ensure_for_events(connection, events)
        suffix = _IGNORE_DUPLICATES if ignore_duplicates else ""
        if len(events) == 1:
            event = events[0]
            metadata = event.get("metadata")
            row = {name: event.get(name, _EVENT_DEFAULTS.get(name)) for name in EVENT_COLUMNS}
            row["metadata"] = None if metadata is None else encode_json(metadata)  # text, which the server casts to JSONB
            row["timestamp"] = _utc(row["timestamp"])
            statement, parameters = _PG_INSERT_ONE + suffix, row
        else:
            statement = _PG_INSERT + suffix
            parameters = (encode_json([_complete(event, _EVENT_DEFAULTS) for event in events]),)
        if any(rollup.counts(event) for event in events):
            # One statement: the rows this insert stored (not the duplicates it skipped) go into the rollup.
            statement = f"WITH inserted AS ({statement}{rollup.PG_UPSERT_FROM_INSERTED}"
        try:
            connection.exec_driver_sql(statement, parameters)
        except Exception as exc:
            if partitions.missing_partition(exc):  # a month dropped since this process looked: look again next time
                partitions.forget(connection.engine)
            raise
        return
    _insert_elsewhere(connection, events, ignore_duplicates)
    days = rollup.event_days(events)
    if days:
        # SQLite's writers take turns (this transaction holds the write lock now): recounting the days the
        # batch touched from the table is exact, duplicates skipped or not.
        rollup.rebuild(connection, *days)


def _insert_elsewhere(connection, events: list[dict], ignore_duplicates: bool) -> None:
    """SQLite (and any other database): SQLAlchemy Core's insert."""
    dialect = connection.dialect.name
    if not ignore_duplicates:
        connection.execute(_CORE_INSERT, events)
        return
    if dialect == "sqlite":
        statement = sqlite_insert(_table).on_conflict_do_nothing(index_elements=list(EVENT_ID_CONFLICT["sqlite"]))
        # RETURNING makes SQLAlchemy send the batch as multi-row INSERT ... VALUES statements
        # ("insertmanyvalues"); without it a batch goes through executemany, a statement per row.
        # (SQLite before 3.35 has no RETURNING: there the batch goes row by row.)
        if connection.dialect.insert_executemany_returning:
            statement = statement.returning(_table.c.id)
        connection.execute(statement, events)
        return
    # Another dialect (only PostgreSQL and SQLite are supported): skip the event ids already stored one by one.
    for event in events:
        if not connection.execute(_table.select().where(_table.c.event_id == event["event_id"])).first():
            connection.execute(_CORE_INSERT, [event])


def insert_links(connection, links: list[dict]) -> None:
    """Insert hash-chain links (dicts of every ``audit_chain`` column) on ``connection``, in its transaction."""
    if not links:
        return
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_PG_INSERT_LINKS, (encode_json([_complete(link, _LINK_DEFAULTS) for link in links]),))
    else:
        connection.execute(_CORE_INSERT_LINKS, links)
