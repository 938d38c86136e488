"""``AuditLogRepository``: reading (and, for the transactional path, adding) audit rows."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, select

from ..extensions import db
from .filters import AuditFilters, apply_filters, filtered
from .inserts import insert_events
from .models import AuditLog


class AuditLogRepository:
    """Every read of the audit table goes through here, built on one query builder (``filters.py``)."""

    def __init__(self, session=None):
        self.session = session or db.session

    def create(self, event: dict) -> AuditLog:
        """Insert one event (a dict from ``events.build_event``) in the current transaction."""
        self.session.flush()  # pending changes first (as an ORM execute's autoflush would): the row may refer to them
        insert_events(self.session.connection(), [event])
        return self.session.scalar(select(AuditLog).where(AuditLog.event_id == event["event_id"]))

    def get_by_id(self, log_id: int) -> AuditLog | None:
        return self.session.get(AuditLog, log_id)

    def get_all(self, filters: AuditFilters = AuditFilters(), skip: int = 0, limit: int = 50) -> list[AuditLog]:
        """One page of matching events, newest first."""
        return list(self.session.scalars(filtered(filters).offset(skip).limit(limit)))

    def count(self, filters: AuditFilters = AuditFilters()) -> int:
        query = apply_filters(select(func.count()).select_from(AuditLog), filters)
        return self.session.scalar(query)

    def iter_all(self, filters: AuditFilters = AuditFilters(), batch_size: int = 1000) -> Iterator[AuditLog]:
        """Every matching event, newest first, read in batches (a server-side cursor where supported)."""
        result = self.session.execute(
            filtered(filters).execution_options(yield_per=batch_size, stream_results=True)
        ).scalars()
        try:
            yield from result
        finally:
            result.close()

    def recent_for_user(self, user_id: int, limit: int = 10) -> list[AuditLog]:
        """The newest events the user performed."""
        return self.get_all(AuditFilters(user_id=user_id), 0, limit)
