"""The one query module for reading events: filters, the order, offset and cursor paging, bounded counts.

The viewer, the API, the export, the error dashboard and the integrity page build their queries here, so
one filter means the same rows everywhere and the order is written once. The lists (``list_page``,
``list_since``) read from the read replica when one is configured and current (``audit_portal/replica.py``);
``AuditLogRepository`` itself reads the session it is given, by default the primary's. (The hash chain's sealer, verifier
and purge read rows in chain order, by id, in ``integrity/``: that is the chain's own concern.)

Paging stays fast as the log grows: keyset cursors over (timestamp, id) and bounded counts. A cursor is
opaque and signed with SECRET_KEY. It carries the position of the last event on a page and a hash of the
filters it was made for, so it cannot be edited or reused with other filters to see events those filters
exclude. Counting stops at AUDIT_COUNT_LIMIT matching rows: past that the total is reported as a lower bound
(``total_is_exact: false``, "10,000+" in the viewer) instead of scanning millions of rows. With a ``search``, or
a ``q`` of several terms or with a bare word, the bound is AUDIT_SEARCH_COUNT_LIMIT: the other filters count along
an index that holds only matching rows, but a text match, or a term the index does not hold, must read about
bound / (share of matching events) rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Select, func, or_, select, tuple_

from ...database import escape_like
from ...extensions import db
from ...replica import replica_first
from ..record.models import AuditLog
from .search import ATTEMPTED_USERNAME, compile_query, reads_rows

#: The log's one order: newest first, ties broken by id (the index ``ix_audit_logs_timestamp_id`` serves it).
NEWEST_FIRST = (AuditLog.timestamp.desc(), AuditLog.id.desc())


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
    ip_address: str | None = None
    username: str | None = None
    q: str | None = None  #: a search query (``search.py``)

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
             "fingerprint", "request_id", "ip_address")



def apply_filters(query: Select, filters: AuditFilters) -> Select:
    """Add ``filters`` to ``query`` (a select from ``audit_logs``)."""
    if filters.date_from is not None:
        query = query.where(AuditLog.timestamp >= filters.date_from)
    if filters.date_to is not None:
        query = query.where(AuditLog.timestamp < filters.date_to)
    for name in _EQUALITY:
        value = getattr(filters, name)
        if value is not None:
            query = query.where(getattr(AuditLog, name) == value)
    if filters.username is not None:  # the actor's name at the time, or the name a failed login typed
        query = query.where(or_(AuditLog.username == filters.username, ATTEMPTED_USERNAME == filters.username))
    if filters.q:
        query = query.where(*compile_query(filters.q))
    if filters.search:
        pattern = f"%{escape_like(filters.search.lower())}%"
        query = query.where(func.lower(AuditLog.description).like(pattern, escape="\\"))
    return query


def ordered(query: Select, filters: AuditFilters) -> Select:
    """``query`` (a select from ``audit_logs``) with ``filters``, newest first."""
    return apply_filters(query, filters).order_by(*NEWEST_FIRST)


def filtered(filters: AuditFilters) -> Select:
    """``SELECT audit_logs`` with ``filters``, newest first."""
    return ordered(select(AuditLog), filters)


# -- pages -------------------------------------------------------------------------------------------------


class BadCursor(ValueError):
    """The cursor is malformed, forged, or was made for other filters."""


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="audit-log-cursor")


def filters_hash(filters: AuditFilters, scope: str) -> str:
    return hashlib.sha256(json.dumps([scope, filters.active()], sort_keys=True).encode()).hexdigest()[:16]


def make_cursor(log: AuditLog, filters: AuditFilters, scope: str) -> str:
    return _serializer().dumps([log.timestamp.isoformat(), log.id, filters_hash(filters, scope)])


def read_cursor(cursor: str, filters: AuditFilters, scope: str) -> tuple[datetime, int]:
    try:
        timestamp, log_id, digest = _serializer().loads(cursor)
        position = datetime.fromisoformat(timestamp), int(log_id)
    except (BadSignature, ValueError, TypeError):
        raise BadCursor("Not a valid cursor: use the next_cursor value of a previous page, unchanged.") from None
    if digest != filters_hash(filters, scope):
        raise BadCursor("This cursor was made for other filters: repeat the same filters, or start again without it.")
    return position


@dataclass
class Page:
    items: list[AuditLog]
    total: int
    total_is_exact: bool
    next_cursor: str | None


class AuditLogRepository:
    """The reads of events that the pages, the API, the export, the dashboard and the integrity page make.
    It never writes: events go in through ``write.service.log_audit``."""

    def __init__(self, session=None):
        self.session = session or db.session

    def get_by_id(self, log_id: int) -> AuditLog | None:
        """The event with id ``log_id`` (None for none, also for an id no column can hold)."""
        return self.session.get(AuditLog, log_id) if 0 < log_id < 2**63 else None

    def get_many(self, ids: Iterable[int]) -> dict[int, AuditLog]:
        """The events with these ids, by id (missing ones, e.g. purged meanwhile, are left out)."""
        ids = list(ids)
        return {log.id: log for log in self.session.scalars(select(AuditLog).where(AuditLog.id.in_(ids)))} if ids else {}

    def get_all(self, filters: AuditFilters = AuditFilters(), skip: int = 0, limit: int = 50) -> list[AuditLog]:
        """One page of matching events by offset, newest first."""
        return list(self.session.scalars(filtered(filters).offset(skip).limit(limit)))

    def newest(self, filters: AuditFilters) -> AuditLog | None:
        """The newest event matching ``filters``, or None."""
        return self.session.scalar(filtered(filters).limit(1))

    def recent_for_user(self, user_id: int, limit: int = 10) -> list[AuditLog]:
        """The newest events the user performed."""
        return self.get_all(AuditFilters(user_id=user_id), 0, limit)

    def count(self, filters: AuditFilters = AuditFilters()) -> int:
        """How many events match, exactly (an export's row count; lists use ``count_bounded``)."""
        return self.session.scalar(apply_filters(select(func.count()).select_from(AuditLog), filters))

    def count_newer_than(self, log_id: int) -> int:
        """How many events have an id above ``log_id`` (the integrity page: events not sealed yet)."""
        return self.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.id > log_id))

    def count_bounded(self, filters: AuditFilters, bound: int | None = None) -> tuple[int, bool]:
        """(count, exact): the exact count up to ``bound`` (AUDIT_COUNT_LIMIT; AUDIT_SEARCH_COUNT_LIMIT, if lower,
        with a ``search`` or a ``q`` whose count reads rows, ``search.reads_rows``), else that bound and False."""
        bound = bound or current_app.config["AUDIT_COUNT_LIMIT"]
        if filters.search or reads_rows(filters.q):
            bound = min(bound, current_app.config["AUDIT_SEARCH_COUNT_LIMIT"])
        limited = apply_filters(select(AuditLog.id), filters).limit(bound + 1).subquery()
        total = self.session.scalar(select(func.count()).select_from(limited))
        return (total, True) if total <= bound else (bound, False)

    def since(self, filters: AuditFilters, since_id: int, limit: int) -> tuple[list[AuditLog], bool]:
        """(events with an id above ``since_id`` matching ``filters``, oldest first, at most ``limit``; whether
        more follow): the live tail's polls, along the primary key."""
        query = apply_filters(select(AuditLog).where(AuditLog.id > since_id), filters).order_by(AuditLog.id)
        rows = list(self.session.scalars(query.limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def page(self, filters: AuditFilters, skip: int = 0, limit: int = 50, cursor: str | None = None,
             scope: str = "list") -> Page:
        """One page, newest first: by ``cursor`` (keyset) when given, else by ``skip`` (offset). ``scope`` names
        the list a cursor belongs to (a cursor of one list is refused by another)."""
        query = filtered(filters)
        if cursor:
            timestamp, log_id = read_cursor(cursor, filters, scope)
            query = query.where(tuple_(AuditLog.timestamp, AuditLog.id) < tuple_(timestamp, log_id))
        else:
            query = query.offset(skip)
        rows = list(self.session.scalars(query.limit(limit + 1)))
        items, more = rows[:limit], len(rows) > limit
        total, exact = self.count_bounded(filters)
        return Page(items, total, exact, make_cursor(items[-1], filters, scope) if more and items else None)


# -- the lists, from the read replica when it is in use ---------------------------------------------------------


@replica_first
def list_page(filters: AuditFilters, skip: int = 0, limit: int = 50, cursor: str | None = None, scope: str = "list",
              *, session) -> Page:
    """One page of a list (the viewer, the list API, the API's error list): ``AuditLogRepository.page``."""
    return AuditLogRepository(session).page(filters, skip, limit, cursor, scope)


@replica_first
def list_since(filters: AuditFilters, since_id: int, limit: int, *, session) -> tuple[list[AuditLog], bool]:
    """A live tail's events after ``since_id``: ``AuditLogRepository.since``."""
    return AuditLogRepository(session).since(filters, since_id, limit)
