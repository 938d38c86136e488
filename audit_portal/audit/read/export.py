"""The one exporter behind the API download, the viewer's Export buttons and ``flask audit export``.

Callers record the EXPORT event (``write.service.log_export``) once ``prepare_export`` has accepted the export.

Rows are read in batches, on a connection of the export's own opened when the export is asked for, and written as
they are read, so memory does not grow with the size of the export; the connection goes back to the pool when the
download ends or the client goes away. The database formats each CSV line (see ``_csv_select``; bench/export.py
measures it against PostgreSQL's COPY), and on PostgreSQL each JSON item too (``export_items``). PostgreSQL streams
them with COPY from a thread (``copy_stream``), other databases through a server-side cursor. Text a spreadsheet
would run as a formula is neutralised. With a read replica in use (``audit_portal/replica.py``) the export is
counted and read there: ``prepare_export`` picks the database once, and the file comes from the one it counted on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import String, Text, case, cast, func, literal, select, type_coerce
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ... import replica
from ...extensions import db
from ...serving import heartbeat
from ...timeutil import utcnow
from ..record.enums import ExportFormat
from ..record.models import AuditLog
from .copy_stream import CopyStream
from .erased import shown_column
from .export_items import ITEM_BATCH, exact_items, item_select
from .query import AuditFilters, AuditLogRepository, filtered, ordered
from .schemas import AuditLogSchema

#: CSV columns: every field of the record, then the UI helpers.
CSV_COLUMNS = (
    "id", "event_id", "timestamp", "user_id", "username", "action_type", "resource_type", "resource_id", "category",
    "description", "metadata", "ip_address", "user_agent", "status", "is_sensitive", "severity", "error_type",
    "stack_trace", "fingerprint", "request_id", "http_method", "path", "status_code", "duration_ms",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json; charset=utf-8",
    ExportFormat.NDJSON: "application/x-ndjson; charset=utf-8",
}
_item_schema = AuditLogSchema()


class ExportTooLarge(Exception):
    """More rows match than ``AUDIT_EXPORT_MAX_ROWS`` allows."""

    def __init__(self, matched: int, limit: int):
        self.matched, self.limit = matched, limit
        super().__init__(
            f"{matched:,} events match these filters, more than the export limit of {limit:,} "
            "(AUDIT_EXPORT_MAX_ROWS). Narrow the filters, e.g. a shorter date range, and export in parts."
        )


#: Rows per batch read from the server-side cursor, and so per chunk sent (about 1 MB of text). Larger batches
#: were no faster on PostgreSQL and cost the worker more memory.
CSV_BATCH = 2000
_CSV_HEADER = ",".join(CSV_COLUMNS) + "\r\n"
_NUMBER_COLUMNS = frozenset({"id", "user_id", "status_code", "duration_ms"})


def _text_cell(text, dialect: str):
    """SQL for one CSV cell of text: neutralised, quotes doubled and always quoted (so no comma, quote or newline
    inside can open a new cell or row); NULL stays NULL."""
    if dialect == "postgresql":  # ascii(): the code point of the first character; cheaper than comparing text
        formula = func.ascii(text).in_([ord(c) for c in FORMULA_STARTS])
    else:
        formula = func.substr(text, 1, 1).in_(FORMULA_STARTS)
    prefix = case((formula, literal("'", String)), else_=literal("", String))
    return literal('"', String) + prefix + func.replace(text, '"', '""', type_=String) + literal('"', String)


def _csv_cell_sql(name: str, dialect: str):
    column = shown_column(name)  # "[erased]" where an erasure left a personal column NULL
    if name == "timestamp":  # UTC ISO 8601, never a formula, never quoted
        if dialect == "postgresql":
            return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"', type_=String)
        return func.replace(type_coerce(column, String), " ", "T", type_=String) + "+00:00"  # SQLite: UTC text
    if name in _NUMBER_COLUMNS:  # numbers stay numbers: unquoted
        return type_coerce(cast(column, Text), String)
    if name == "is_sensitive":
        return case((column.is_(True), literal("true", String)), (column.is_(False), literal("false", String)))
    return _text_cell(type_coerce(cast(column, Text), String), dialect)  # metadata: the JSON as text


@functools.cache
def _csv_line(dialect: str):
    """The line expression, built once per dialect (a few hundred SQL nodes: building them took longer than
    the rest of a small export's set-up)."""
    line = None
    for name in CSV_COLUMNS:
        cell = func.coalesce(_csv_cell_sql(name, dialect), literal("", String), type_=String)
        line = cell if line is None else line + literal(",", String) + cell
    return line.label("line")


def _csv_select(filters: AuditFilters, dialect: str):
    """One column: the whole CSV line of each row, formatted by the database.

    Building Python objects for 24 columns per row (and formatting them back into text) is what makes a CSV
    export slow; PostgreSQL (or SQLite) formats the line in C and the app only joins lines and sends them.
    Empty cells are NULLs; text is always quoted, so an empty text is ``""``.
    """
    query = ordered(select(_csv_line(dialect)).select_from(AuditLog.__table__), filters)
    return query.execution_options(stream_results=True, yield_per=CSV_BATCH)


def _open(execute, bind: Engine | None = None) -> Iterator:
    """Run ``execute(connection)`` now, on a connection of the export's own (of ``bind``: the primary's engine or
    the replica's; if the replica's cannot be had, the primary's), and return a generator of what
    it yields that closes the cursor (or stops the COPY) and gives the connection back when it ends, also when the
    client goes away halfway (the server then closes the response iterator, which ends here with GeneratorExit).

    Executed now, in the view, not when the server starts sending: the file holds the rows as they were when
    the export was asked for (just counted), not also those written meanwhile, such as this very request's
    REQUEST event. Its own connection, not the request's session: Flask ends that session (teardown) between
    the view and the streaming of the body.
    """
    connection = replica.connect(bind or db.engine)
    try:
        pieces, close = execute(connection)
    except BaseException:
        connection.close()
        raise
    return _released(connection, close, pieces)


def _released(connection, close, pieces: Iterator[str]) -> Iterator[str]:
    try:
        yield from pieces
    finally:
        try:
            close()  # the cursor, or the COPY
        finally:
            connection.close()  # back to the pool, rolled back: nothing left "idle in transaction"


#: Up to this many rows an export's COPY may sort them (in moments); a larger one streams in index order.
SORT_AT_MOST = 50_000


def _rows(connection, query, batch: int, count: int | None):
    """Batches of the one-column ``query``'s rows (``count`` of them, if known), and how to stop reading them: a COPY
    on PostgreSQL, a server-side cursor elsewhere (Core, not the ORM: no ORM row processing for a column of text)."""
    if connection.dialect.name == "postgresql":
        rows = CopyStream(connection, query, batch, sort=count is not None and count <= SORT_AT_MOST)
        return rows, rows.close
    result = connection.execute(query)
    return result.scalars().partitions(), result.close


def _csv_chunks(filters: AuditFilters, count: int | None = None, bind: Engine | None = None) -> Iterator[str]:
    def execute(connection):
        lines, close = _rows(connection, _csv_select(filters, connection.dialect.name), CSV_BATCH, count)
        return _csv_pieces(lines), close

    return _open(execute, bind)


def _csv_pieces(batches: Iterator[list[str]]) -> Iterator[str]:
    yield _CSV_HEADER
    for lines in batches:
        lines.append("")
        yield "\r\n".join(lines)
        heartbeat()


def item_chunks(filters: AuditFilters, fmt: ExportFormat, count: int | None = None, *,
                in_python: bool = False, bind: Engine | None = None) -> Iterator[str]:
    """The JSON or NDJSON text of the matching events' API items, newest first, read in batches. PostgreSQL writes
    each item's text (``export_items``); on other databases, or with ``in_python`` (the reference the tests compare
    it with), Python builds them from a server-side cursor: the ORM object, ``AuditLogSchema``, ``json.dumps``.
    ``count``: how many events match, if known (up to ``SORT_AT_MOST``, PostgreSQL may sort them)."""
    pieces = _ITEM_FORMATS[fmt]

    def execute(connection):
        if connection.dialect.name == "postgresql" and not in_python:
            items, close = _rows(connection, item_select(filters), ITEM_BATCH, count)
            return pieces(exact_items(items)), close
        session = Session(bind=connection)
        result = session.execute(filtered(filters).execution_options(yield_per=ITEM_BATCH, stream_results=True))

        def close():
            result.close()
            session.close()

        return pieces(_dumped(result)), close

    return _open(execute, bind)


def _dumped(result) -> Iterator[list[str]]:
    for logs in result.scalars().partitions():
        yield [json.dumps(_item_schema.dump(log), ensure_ascii=False) for log in logs]
        heartbeat()


def _json_array(batches: Iterator[list[str]]) -> Iterator[str]:
    yield "["
    separator = "\n"
    for items in batches:  # one join per batch, no copy of the joined text
        items[0] = separator + items[0]
        yield ",\n".join(items)
        separator = ",\n"
    yield "\n]\n"


def _json_lines(batches: Iterator[list[str]]) -> Iterator[str]:
    for items in batches:
        items.append("")
        yield "\n".join(items)


_ITEM_FORMATS = {ExportFormat.JSON: _json_array, ExportFormat.NDJSON: _json_lines}


@dataclass
class Export:
    """A prepared export: how many rows, its file name and media type, and the chunks to send."""

    format: ExportFormat
    filters: AuditFilters
    count: int
    filename: str
    media_type: str
    #: The engine it was counted on, and so is read from: the primary's or the read replica's.
    bind: Engine | None = None

    def chunks(self) -> Iterator[str]:
        if self.format == ExportFormat.CSV:
            return _csv_chunks(self.filters, self.count, self.bind)
        return item_chunks(self.filters, self.format, self.count, bind=self.bind)


def export_filename(filters: AuditFilters, fmt: ExportFormat) -> str:
    start = filters.date_from.strftime("%Y%m%dT%H%M%SZ") if filters.date_from else "start"
    end = filters.date_to.strftime("%Y%m%dT%H%M%SZ") if filters.date_to else utcnow().strftime("%Y%m%dT%H%M%SZ")
    return f"audit-logs_{start}_{end}.{fmt.value}"


@replica.replica_first
def prepare_export(filters: AuditFilters, fmt: str, *, session) -> Export:
    """Count the matching events against the limit and return the export to stream (the caller records it), read
    from the database it was counted on.

    Raises ``ExportTooLarge`` (nothing is sent, nothing partial) when too many rows match, and ``ValueError``
    for an unknown format.
    """
    fmt = ExportFormat.parse(fmt)
    count = AuditLogRepository(session).count(filters)
    limit = current_app.config["AUDIT_EXPORT_MAX_ROWS"]
    if count > limit:
        raise ExportTooLarge(count, limit)
    return Export(fmt, filters, count, export_filename(filters, fmt), MEDIA_TYPES[fmt], session.get_bind())
