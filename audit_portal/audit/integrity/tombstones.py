"""Tombstones: the links the retention purge leaves behind when it removes their events.

A link whose event is missing is a legitimate tombstone iff some recorded purge (``audit_purges``) covers it: the
purge read a head at or past the link, its cutoff for the link's category (the category's own, else ``"*"``) is
later than the link's event time, and none of the holds it kept contains that time (spec19.md). Otherwise the
event was deleted: tampering. ``verify`` asks ``purge_covering`` for every link without its event."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from .models import AuditPurge
from .retention import cutoff_for

_purges = AuditPurge.__table__


@dataclass(frozen=True)
class PurgeRecord:
    """One ``audit_purges`` row, its times parsed (aware, UTC)."""

    id: int
    at: datetime | None
    cutoffs: dict[str, datetime]
    holds: tuple[tuple[datetime, datetime], ...]
    head_seq: int
    count: int

    def as_body(self) -> dict:
        """As the digests carry it (ISO 8601 text)."""
        return {"id": self.id, "at": self.at.isoformat() if self.at else None,
                "cutoffs": {key: value.isoformat() for key, value in self.cutoffs.items()},
                "holds": [[start.isoformat(), end.isoformat()] for start, end in self.holds],
                "head_seq": self.head_seq, "count": self.count}


def _moment(value) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def as_record(purge) -> PurgeRecord:
    """A ``PurgeRecord`` from one: an ``audit_purges`` row (or model), or a dict as a digest carries it."""
    if isinstance(purge, PurgeRecord):
        return purge
    get = purge.get if isinstance(purge, Mapping) else (lambda name: getattr(purge, name))
    at = get("at")
    return PurgeRecord(id=int(get("id")), at=_moment(at) if at else None,
                       cutoffs={str(key): _moment(value) for key, value in (get("cutoffs") or {}).items()},
                       holds=tuple((_moment(start), _moment(end)) for start, end in (get("holds") or [])),
                       head_seq=int(get("head_seq")), count=int(get("count") or 0))


def load_purges(conn) -> list[PurgeRecord]:
    """Every recorded purge, newest first (the newest covers most tombstones, so ``purge_covering`` finds it first)."""
    rows = conn.execute(select(_purges).order_by(_purges.c.head_seq.desc(), _purges.c.id.desc()))
    return [as_record(row._mapping) for row in rows]


def covers(purge: PurgeRecord, seq: int, timestamp: datetime, category: str | None) -> bool:
    """True when ``purge`` removed (or was allowed to remove) the event of link ``seq``."""
    if seq > purge.head_seq:
        return False
    cutoff = cutoff_for(purge.cutoffs, category)
    if cutoff is None or not timestamp < cutoff:
        return False
    return not any(start <= timestamp <= end for start, end in purge.holds)


def purge_covering(purges, seq: int, timestamp, category: str | None) -> PurgeRecord | None:
    """The first of ``purges`` (records, rows or digest dicts) that explains a missing event at link ``seq`` with
    this event time and category, or None: then the event was deleted by someone else. A link without an event time
    (sealed before the public chain) is never covered."""
    if timestamp is None:
        return None
    moment = _moment(timestamp)
    for purge in purges:
        record = as_record(purge)
        if covers(record, seq, moment, category):
            return record
    return None


def same_purge(record: PurgeRecord, other: PurgeRecord) -> bool:
    """The same purge, as far as tombstones go (its count may be corrected after a purge stopped half-way)."""
    return (record.cutoffs, record.holds, record.head_seq) == (other.cutoffs, other.holds, other.head_seq)


def purge_mac(key: bytes, record: PurgeRecord) -> str:
    """The HMAC of what a purge record says about tombstones (not its count, which a purge stopped half-way
    corrects)."""
    body = record.as_body()
    body.pop("count", None)
    body.pop("at", None)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), "sha256").hexdigest()


def recorded_purges(conn, key: bytes) -> tuple[list[PurgeRecord], list[int]]:
    """The purges that explain tombstones: those whose ``mac`` the HMAC key confirms. Returns them, and the ids of the
    records it does not confirm: added or edited by someone without the key, to pass a deletion off as a purge."""
    macs = dict(conn.execute(select(_purges.c.id, _purges.c.mac)).all())
    trusted, forged = [], []
    for record in load_purges(conn):
        mac = macs.get(record.id) or ""
        if hmac.compare_digest(mac, purge_mac(key, record)):
            trusted.append(record)
        else:
            forged.append(record.id)
    return trusted, sorted(forged)
