"""Erased personal values in what the read side serves: the API items (``ErasableString``) and the exports' SQL
(``shown_column``). One rule, ``record/presentation.py``'s: a username, IP address or user agent that an erasure
left NULL reads "[erased]"; a NULL that no erasure made (an anonymous event, a command without a client) stays NULL.
What an erasure removed is recorded on the event's link (``audit_chain.erased``, small and indexed)."""

from __future__ import annotations

from marshmallow import fields
from sqlalchemy import String, and_, case, literal, select

from ..record.models import AuditChainLink, AuditLog
from ..record.presentation import ERASED, erased_fields

_chain = AuditChainLink.__table__
_table = AuditLog.__table__


class ErasableString(fields.String):
    """A personal text column of an item: "[erased]" where an erasure left it NULL."""

    def serialize(self, attr, obj, accessor=None, **kwargs):
        value = super().serialize(attr, obj, accessor, **kwargs)
        return ERASED if value is None and attr in erased_fields(obj) else value


def erased_ids(field: str):
    """The ids of the events whose ``field`` an erasure removed (read from ``ix_audit_chain_erased``)."""
    erased = _chain.c.erased
    return select(_chain.c.audit_log_id).where(erased.is_not(None), erased[field].as_string().is_not(None))


def shown_column(name: str):
    """SQL for a column of ``audit_logs`` as an export shows it. The id list is read once per query (on PostgreSQL a
    hashed subplan), and only for the rows whose value is NULL."""
    column = _table.c[name]
    if name not in ("username", "ip_address", "user_agent"):
        return column
    return case((and_(column.is_(None), _table.c.id.in_(erased_ids(name))), literal(ERASED, String)), else_=column)
