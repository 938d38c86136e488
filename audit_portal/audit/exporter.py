"""The one exporter behind the API download, the viewer's Export buttons and ``flask audit export``.

Rows are read in batches through a server-side cursor and written as they are read, so memory does not
grow with the size of the export. Text a spreadsheet would run as a formula is neutralised.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import String, Text, cast, func, select, type_coerce

from ..extensions import db
from ..timeutil import utcnow
from .enums import ActionType, ExportFormat, ResourceType
from .filters import AuditFilters, apply_filters
from .models import AuditLog
from .repository import AuditLogRepository
from .schemas import AuditLogSchema
from .service import log_audit

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


def neutralise(value: str) -> str:
    """Prefix text that a spreadsheet would run as a formula with an apostrophe."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return neutralise(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return neutralise(str(value))


def _csv_select(filters: AuditFilters, dialect: str):
    """The CSV columns, with the database formatting timestamps and JSON as text (much cheaper than
    building Python datetimes and dicts only to turn them back into text)."""
    table = AuditLog.__table__
    columns = []
    for name in CSV_COLUMNS:
        column = table.c[name]
        if name == "timestamp":
            if dialect == "postgresql":
                text = func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
            else:  # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
                text = func.replace(type_coerce(column, String), " ", "T") + "+00:00"
            column = type_coerce(text, String).label(name)
        elif name == "metadata":
            column = type_coerce(cast(column, Text), String).label(name)
        columns.append(column)
    query = apply_filters(select(*columns), filters).order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
    return query.execution_options(stream_results=True, yield_per=2000)


def _csv_chunks(filters: AuditFilters) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    result = db.session.execute(_csv_select(filters, db.engine.dialect.name))
    try:
        for i, row in enumerate(result, 1):
            writer.writerow([_csv_cell(value) for value in row])
            if i % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
    finally:
        result.close()
        db.session.rollback()  # release the connection at once, also when the client went away halfway


def _items(filters: AuditFilters) -> Iterator[dict]:
    try:
        for log in AuditLogRepository().iter_all(filters):
            yield _item_schema.dump(log)
    finally:
        db.session.rollback()  # release the connection at once, also when the client went away halfway


def _json_chunks(filters: AuditFilters) -> Iterator[str]:
    yield "["
    first = True
    for item in _items(filters):
        yield ("" if first else ",") + "\n" + json.dumps(item, ensure_ascii=False)
        first = False
    yield "\n]\n"


def _ndjson_chunks(filters: AuditFilters) -> Iterator[str]:
    for item in _items(filters):
        yield json.dumps(item, ensure_ascii=False) + "\n"


_WRITERS = {ExportFormat.CSV: _csv_chunks, ExportFormat.JSON: _json_chunks, ExportFormat.NDJSON: _ndjson_chunks}


@dataclass
class Export:
    """A prepared export: how many rows, its file name and media type, and the chunks to send."""

    format: ExportFormat
    filters: AuditFilters
    count: int
    filename: str
    media_type: str

    def chunks(self) -> Iterator[str]:
        return _WRITERS[self.format](self.filters)


def export_filename(filters: AuditFilters, fmt: ExportFormat) -> str:
    start = filters.date_from.strftime("%Y%m%dT%H%M%SZ") if filters.date_from else "start"
    end = filters.date_to.strftime("%Y%m%dT%H%M%SZ") if filters.date_to else utcnow().strftime("%Y%m%dT%H%M%SZ")
    return f"audit-logs_{start}_{end}.{fmt.value}"


def prepare_export(filters: AuditFilters, fmt: str, *, channel: str) -> Export:
    """Check the limit, record the EXPORT event, and return the export to stream.

    Raises ``ExportTooLarge`` (nothing is sent, nothing partial) when too many rows match.
    """
    fmt = ExportFormat.parse(fmt)
    count = AuditLogRepository().count(filters)
    limit = current_app.config["AUDIT_EXPORT_MAX_ROWS"]
    if count > limit:
        raise ExportTooLarge(count, limit)
    log_audit(None, ActionType.EXPORT, ResourceType.AUDIT_LOG, None,
              f"Exported {count:,} audit events as {fmt.value.upper()} ({channel})",
              {"format": fmt.value, "filters": filters.active(), "row_count": count, "channel": channel},
              is_sensitive=True)
    return Export(fmt, filters, count, export_filename(filters, fmt), MEDIA_TYPES[fmt])
