"""Paging that stays fast as the log grows: keyset cursors over (timestamp, id) and bounded counts.

A cursor is opaque and signed with SECRET_KEY. It carries the position of the last event on a page and a
hash of the filters it was made for, so it cannot be edited or reused with other filters to see events
those filters exclude. Counting stops at AUDIT_COUNT_LIMIT matching rows: past that the total is reported
as a lower bound (``total_is_exact: false``, "10,000+" in the viewer) instead of scanning millions of rows.
With a ``search`` the bound is AUDIT_SEARCH_COUNT_LIMIT (1,000): the other filters count along an index that
holds only matching rows, but a text match must read about bound / (share of matching events) rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select, tuple_

from ..extensions import db
from .filters import AuditFilters, apply_filters, filtered
from .models import AuditLog


class BadCursor(ValueError):
    """The cursor is malformed, forged, or was made for other filters."""


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="audit-log-cursor")


def _filters_hash(filters: AuditFilters, scope: str) -> str:
    return hashlib.sha256(json.dumps([scope, filters.active()], sort_keys=True).encode()).hexdigest()[:16]


def make_cursor(log: AuditLog, filters: AuditFilters, scope: str) -> str:
    return _serializer().dumps([log.timestamp.isoformat(), log.id, _filters_hash(filters, scope)])


def read_cursor(cursor: str, filters: AuditFilters, scope: str) -> tuple[datetime, int]:
    try:
        timestamp, log_id, digest = _serializer().loads(cursor)
        position = datetime.fromisoformat(timestamp), int(log_id)
    except (BadSignature, ValueError, TypeError):
        raise BadCursor("Not a valid cursor: use the next_cursor value of a previous page, unchanged.") from None
    if digest != _filters_hash(filters, scope):
        raise BadCursor("This cursor was made for other filters: repeat the same filters, or start again without it.")
    return position


@dataclass
class Page:
    items: list[AuditLog]
    total: int
    total_is_exact: bool
    next_cursor: str | None


def count_bounded(filters: AuditFilters) -> tuple[int, bool]:
    """(count, exact): the exact count up to AUDIT_COUNT_LIMIT (AUDIT_SEARCH_COUNT_LIMIT, if lower, with a
    ``search``), else that bound and False."""
    bound = current_app.config["AUDIT_COUNT_LIMIT"]
    if filters.search:
        bound = min(bound, current_app.config["AUDIT_SEARCH_COUNT_LIMIT"])
    limited = apply_filters(select(AuditLog.id), filters).limit(bound + 1).subquery()
    count = db.session.scalar(select(func.count()).select_from(limited))
    return (count, True) if count <= bound else (bound, False)


def fetch_page(filters: AuditFilters, skip: int = 0, limit: int = 50, cursor: str | None = None,
               scope: str = "list") -> Page:
    """One page, newest first: by ``cursor`` (keyset) when given, else by ``skip`` (offset)."""
    query = filtered(filters)
    if cursor:
        timestamp, log_id = read_cursor(cursor, filters, scope)
        query = query.where(tuple_(AuditLog.timestamp, AuditLog.id) < tuple_(timestamp, log_id))
    else:
        query = query.offset(skip)
    rows = list(db.session.scalars(query.limit(limit + 1)))
    items, more = rows[:limit], len(rows) > limit
    total, exact = count_bounded(filters)
    return Page(items, total, exact, make_cursor(items[-1], filters, scope) if more and items else None)
