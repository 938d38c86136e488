"""The filters every list, export and viewer accepts, and the one query builder that applies them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime

from sqlalchemy import Select, func, select

from ..database import escape_like
from .models import AuditLog


@dataclass(frozen=True)
class AuditFilters:
    """Parsed, validated filters. ``date_to`` is exclusive (a date alone was turned into the next midnight)."""

    date_from: datetime | None = None
    date_to: datetime | None = None
    user_id: int | None = None
    action_type: str | None = None
    resource_type: str | None = None
    status: str | None = None
    category: str | None = None
    severity: str | None = None
    error_type: str | None = None
    search: str | None = None
    fingerprint: str | None = None
    request_id: str | None = None

    def active(self) -> dict:
        """The filters that are set, as JSON-friendly values (for audit metadata and links)."""
        out = {}
        for key, value in asdict(self).items():
            if value is not None and value != "":
                out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


_EQUALITY = ("user_id", "action_type", "resource_type", "status", "category", "severity", "error_type",
             "fingerprint", "request_id")


def apply_filters(query: Select, filters: AuditFilters) -> Select:
    """Add ``filters`` to ``query`` (a select over ``AuditLog``)."""
    if filters.date_from is not None:
        query = query.where(AuditLog.timestamp >= filters.date_from)
    if filters.date_to is not None:
        query = query.where(AuditLog.timestamp < filters.date_to)
    for name in _EQUALITY:
        value = getattr(filters, name)
        if value is not None:
            query = query.where(getattr(AuditLog, name) == value)
    if filters.search:
        pattern = f"%{escape_like(filters.search.lower())}%"
        query = query.where(func.lower(AuditLog.description).like(pattern, escape="\\"))
    return query


def filtered(filters: AuditFilters) -> Select:
    """``SELECT audit_logs`` with ``filters``, newest first (timestamp DESC, id DESC)."""
    return apply_filters(select(AuditLog), filters).order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
