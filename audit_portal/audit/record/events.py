"""Building an event: the one function that turns what happened into a safe, bounded row."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import time
from datetime import datetime

from . import models as m
from .enums import ActionType, ErrorSeverity, ResourceType, Status, category_for
from .redaction import redact, redact_text, storable

#: C0 and C1 control characters and the Unicode line and paragraph separators: anything that could start a line.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
TRUNCATED = "…[truncated]"
METADATA_MAX_BYTES = 16_000
#: Integer columns are 32-bit.
INT32_MAX = 2**31 - 1


def single_line(value: object, limit: int) -> str | None:
    """Bound ``value`` to ``limit`` characters and escape control characters (CR, LF, NUL, ...),
    so a header or a name can never forge a second line in a log or a CSV file."""
    if value is None:
        return None
    text = str(value)
    if text.isascii() and text.isprintable():  # the common case: nothing to escape (and NUL-free)
        return bound(text, limit)
    return bound(_CONTROL_RE.sub(_escape, storable(text)), limit)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def multi_line(value: str | None, limit: int) -> str | None:
    """Redact, make storable and bound a text that may keep its line breaks (a stack trace)."""
    if value is None:
        return None
    return bound(storable(redact_text(str(value))), limit)


def bound(text: str | None, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` characters, marked as truncated where the field has room for it."""
    if text is None or len(text) <= limit:
        return text
    if limit < 4 * len(TRUNCATED):
        return text[:limit]
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def canonical_ip(value: str) -> str | None:
    """``value`` as an IP address in its one text form (RFC 5952: lower case, zeros compressed; an IPv4-mapped
    address in dotted form, as servers write it), or None when it is not an IPv4 or IPv6 address. Events store
    it so and the ``ip_address`` filter compares it so, however the address was spelt."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None and not address.scope_id:
        return f"::ffff:{address.ipv4_mapped}"  # str() gives "::ffff:c000:209" before Python 3.13
    return str(address)


def _bounded_metadata(metadata) -> dict | None:
    if metadata is None:
        return None
    clean = redact(metadata)
    if not isinstance(clean, dict):
        clean = {"value": clean}
    # ``redact`` returns only JSON types (dicts with string keys, lists, strings, finite numbers, booleans,
    # None): encoding it measures its size, and ``clean`` itself is what gets stored.
    encoded = json.dumps(clean, allow_nan=False)
    if len(encoded) > METADATA_MAX_BYTES:
        return {"truncated": True, "preview": encoded[: METADATA_MAX_BYTES // 2]}
    return clean


def _integer(name: str, value, maximum: int = INT32_MAX, *, clamp: bool = False) -> int | None:
    """``value`` as a column integer; anything else is a ``ValueError`` (never a row the database refuses)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if clamp:
        return max(0, min(value, maximum))
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum}, got {value}")
    return value


def _aware(timestamp) -> datetime:
    if not isinstance(timestamp, datetime) or timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError("timestamp must be a timezone-aware datetime")
    return timestamp


def new_event_id() -> str:
    """A UUID version 7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74 random bits. Ids made in
    a later millisecond sort later (within one millisecond their order is random; ``id`` and ``timestamp``,
    not this, order the log), so the unique index on ``event_id`` grows at its right edge like the primary key,
    instead of each insert touching a random page of it (a random UUID 4 does: at millions of rows that is
    a page read and a full-page image in the WAL per insert)."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    text = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the object
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def build_event(
    action_type: ActionType | str,
    resource_type: ResourceType | str,
    resource_id: object = None,
    description: str = "",
    *,
    timestamp: datetime,
    user_id: int | None = None,
    username: str | None = None,
    metadata: dict | None = None,
    ip_address: str | None = None,
    user_agent_: str | None = None,
    status: Status | str = Status.SUCCESS,
    is_sensitive: bool = False,
    severity: ErrorSeverity | str | None = None,
    error_type: str | None = None,
    stack_trace: str | None = None,
    fingerprint: str | None = None,
    request_id_: str | None = None,
    http_method: str | None = None,
    path: str | None = None,
    status_code: int | None = None,
    duration_ms: int | None = None,
    event_id: str | None = None,
) -> dict:
    """Return a column dict for ``audit_logs``. Enum values are validated (``ValueError`` names the
    allowed values), as are integers and the timestamp; text is redacted, single-line fields sanitised,
    everything bounded, so that what is returned is a row the database accepts."""
    action = ActionType.parse(action_type)
    resource = ResourceType.parse(resource_type)
    outcome = Status.parse(status)
    return {
        "event_id": single_line(event_id, 36) or new_event_id(),
        "timestamp": _aware(timestamp),
        "user_id": _integer("user_id", user_id, 2**63 - 1),
        "username": single_line(username, m.USERNAME_SNAPSHOT_MAX),
        "action_type": action.value,
        "resource_type": resource.value,
        "resource_id": single_line(resource_id, 64) if resource_id is not None else None,
        "category": category_for(action, resource).value,
        "description": single_line(redact_text(description or ""), m.DESCRIPTION_MAX),
        "metadata": _bounded_metadata(metadata),
        "ip_address": single_line(ip_address, 45),
        "user_agent": single_line(user_agent_, m.USER_AGENT_MAX),
        "status": outcome.value,
        "is_sensitive": bool(is_sensitive),
        "severity": ErrorSeverity.parse(severity).value if severity else None,
        "error_type": single_line(error_type, m.ERROR_TYPE_MAX) or None,  # blank: none (the rollup's key)
        "stack_trace": multi_line(stack_trace, m.STACK_TRACE_MAX),
        "fingerprint": single_line(fingerprint, 64) or None,
        "request_id": single_line(request_id_, 36),
        "http_method": single_line(http_method, 10),
        "path": single_line(redact_text(path), m.PATH_MAX),
        "status_code": _integer("status_code", status_code, 999),
        "duration_ms": _integer("duration_ms", duration_ms, clamp=True),
    }
