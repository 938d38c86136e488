"""What the chains cover: an event's public form, its row hash, and the material of its link.

Two chains run over the same links (``audit_chain``):

- the keyed chain, ``link_hash = HMAC-SHA256(AUDIT_HMAC_KEY, prev_link_hash | material)``, for key holders;
- the public chain, ``public_hash = SHA-256(prev_public_hash | material)``, which anyone can recompute, and whose
  head the signed digests sign (``digests.py``).

``material = "seq|event time|category|row_hash"``, and the row hash is SHA-256 of the event's *public form*: every
column, with the personal fields (``PERSONAL_FIELDS``) replaced by commitments ``SHA-256(salt || value)``, one
random salt per event and field, kept in the link apart from the value. So:

- an event whose value and salt an erasure removed still hashes to its row hash (its commitment is kept);
- a purged event's link stays as a tombstone: its time and category are in the hashed material, so anyone can tell
  which retention rule removed it, and the chain still runs through it.

This module is the one definition of the format; ``scripts/verify_audit_export.py`` repeats it, standalone, for
auditors (keep the two in step).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

from sqlalchemy import DateTime, Row

from ...timeutil import UTCDateTime
from ..record.models import EVENT_COLUMNS, AuditLog

GENESIS = "0" * 64
PERSONAL_FIELDS = ("username", "ip_address", "user_agent", "description", "metadata")
SALT_BYTES = 16

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def encode(value) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8."""
    return _encoder.encode(value).encode()


def iso(value: datetime | None) -> str | None:
    """A time as the chains write it: UTC, ISO 8601 with microseconds."""
    return value.astimezone(UTC).isoformat(timespec="microseconds") if isinstance(value, datetime) else value


_KEYS = ("id", *EVENT_COLUMNS)
#: The time columns: written as UTC ISO text with microseconds.
_TIME_KEYS = tuple(c.name for c in AuditLog.__table__.columns if isinstance(c.type, (DateTime, UTCDateTime)))


def canonical_dict(row, user_id=None) -> dict:
    """Every column of an audit row (``user_id`` as it was when sealed: deleting a user clears the row's), times
    as ISO text. ``row``: a row of ``select(audit_logs)``, or anything with the columns as attributes."""
    if isinstance(row, Row) and row._fields == _KEYS:
        data = dict(zip(_KEYS, row, strict=True))  # a row of ``select(audit_logs)``: no lookups by name
    else:
        values = row._mapping if isinstance(row, Row) else None
        data = {name: values[name] if values is not None else getattr(row, name) for name in _KEYS}
    data["user_id"] = user_id
    for name in _TIME_KEYS:
        data[name] = iso(data[name])
    return data


class JoinedRow:
    """Attribute access to the audit columns of a row of ``audit_logs`` joined with another table (by column, so
    that a column of the same name in the other table does not shadow it)."""

    _table = AuditLog.__table__

    def __init__(self, mapping):
        self._m = mapping

    def __getattr__(self, name):
        try:
            return self._m[self._table.c[name]]
        except KeyError:
            raise AttributeError(name) from None


def new_salts() -> dict[str, str]:
    block = os.urandom(SALT_BYTES * len(PERSONAL_FIELDS)).hex()
    step = SALT_BYTES * 2
    return {name: block[i * step:(i + 1) * step] for i, name in enumerate(PERSONAL_FIELDS)}


def commitment(salt: str, value) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + encode(value)).hexdigest()


def public_form(canonical: dict, salts: dict | None, erased: dict | None = None) -> dict:
    """``canonical`` with each personal field as its commitment: from its salt and value, or, for a field an erasure
    removed, the commitment kept in the link."""
    form = dict(canonical)
    for name in PERSONAL_FIELDS:
        if erased and name in erased:
            form[name] = erased[name]
        else:
            form[name] = commitment((salts or {})[name], canonical[name])
    return form


def row_hash(form: dict) -> str:
    return hashlib.sha256(encode(form)).hexdigest()


def material(seq: int, timestamp, category: str, row_digest: str) -> bytes:
    return f"{seq}|{iso(timestamp)}|{category}|{row_digest}".encode()


def public_link(prev: str, link_material: bytes) -> str:
    return hashlib.sha256(prev.encode() + b"|" + link_material).hexdigest()


def hmac_link(key: bytes, prev: str, link_material: bytes) -> str:
    return hmac.digest(key, prev.encode() + b"|" + link_material, "sha256").hex()
