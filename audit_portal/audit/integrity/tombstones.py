"""Tombstones: the link of an event a retention purge removed stays in the chain. Whether a missing event was
purged or deleted is decided by the purges on record (``audit_purges``, also signed into the digests): a purge
covers a link when the link was sealed before the purge ran (``seq <= head_seq``), its event is older than the
cutoff for its category (``"*"``: every other category), and no hold in force at the time held it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from .models import AuditPurge

DEFAULT = "*"


@dataclass(frozen=True)
class Purge:
    id: int
    head_seq: int
    cutoffs: dict[str, datetime]
    holds: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def from_record(cls, id: int, head_seq: int, cutoffs: dict, holds: list) -> Purge:
        return cls(id, head_seq, {name: _time(value) for name, value in (cutoffs or {}).items()},
                   tuple((_time(start), _time(end)) for start, end in (holds or [])))

    def covers(self, seq: int, timestamp: datetime | None, category: str | None) -> bool:
        if timestamp is None or seq > self.head_seq:
            return False
        cutoff = self.cutoffs.get(category or "", self.cutoffs.get(DEFAULT))
        if cutoff is None or timestamp >= cutoff:
            return False
        return not any(start <= timestamp <= end for start, end in self.holds)


def _time(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def load_purges(conn) -> list[Purge]:
    table = AuditPurge.__table__
    rows = conn.execute(select(table.c.id, table.c.head_seq, table.c.cutoffs, table.c.holds).order_by(table.c.id))
    return [Purge.from_record(*row) for row in rows]


def purge_covering(purges: list[Purge], seq: int, timestamp: datetime | None, category: str | None) -> Purge | None:
    """The first recorded purge that explains why the event at link ``seq`` is gone, or None (it was deleted)."""
    for purge in purges:
        if purge.covers(seq, timestamp, category):
            return purge
    return None
