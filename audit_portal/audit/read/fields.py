"""The field types the read schemas share (and the streams, alerts and saved-views schemas reuse): an enum matched
case-insensitively, a date or date-time, JSON's true/false only, a canonical IP address, a valid search query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marshmallow import ValidationError, fields

from ...timeutil import midnight
from ..record.events import canonical_ip
from .search import QueryError, compile_query


class CaseInsensitiveEnum(fields.String):
    """A string restricted to an enum's values, matched case-insensitively; errors list the allowed values."""

    def __init__(self, enum_cls, **kwargs):
        self.enum_cls = enum_cls
        meta = {"enum": enum_cls.values(), **kwargs.pop("metadata", {})}
        super().__init__(metadata=meta, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return self.enum_cls.parse(raw).value
        except ValueError:
            allowed = ", ".join(self.enum_cls.values())
            raise ValidationError(f"Unknown value {raw[:50]!r}; must be one of: {allowed}.") from None


class DateOrDateTime(fields.Field):
    """ISO 8601 date or datetime. A date alone means the whole day (UTC): its start for ``date_from``,
    the next midnight (exclusive) for ``date_to``. A datetime without an offset is taken as UTC."""

    def __init__(self, *, end: bool = False, **kwargs):
        self.end = end
        super().__init__(metadata={"type": "string", "format": "date-time", **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).strip()
        try:
            if len(text) == 10:
                day = datetime.fromisoformat(text).date()
                start = midnight(day)
                return start + timedelta(days=1) if self.end else start
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except ValueError:
            raise ValidationError(
                f"Not a valid ISO 8601 date or datetime: {text[:40]!r} (e.g. 2026-01-31 or 2026-01-31T14:00:00Z)."
            ) from None
        except OverflowError:
            raise ValidationError(f"Date out of range: {text[:40]!r}.") from None


def no_nul(value: str) -> None:
    """Refuse a NUL character: no stored text contains one (they are escaped on the way in), and PostgreSQL
    refuses it in a query, so it could only ever fail."""
    if "\x00" in value:
        raise ValidationError("Must not contain a NUL character (\\x00).")


class StrictBoolean(fields.Boolean):
    """JSON's true or false only (not 0, 1 or "yes", which marshmallow's Boolean would take)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value


def valid_query(value: str) -> None:
    """A ``q`` that compiles (the error names the term and its offset)."""
    try:
        compile_query(value)
    except QueryError as exc:
        raise ValidationError(exc.message) from None


class IPAddress(fields.String):
    """An IPv4 or IPv6 address, loaded in the canonical text events store (``2001:DB8:0::1`` is ``2001:db8::1``)."""

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        no_nul(raw)  # an IPv6 scope id ("fe80::1%eth0") may hold any other character
        address = canonical_ip(raw)
        if address is None:
            raise ValidationError(f"Not a valid IPv4 or IPv6 address: {raw[:50]!r} (e.g. 203.0.113.24 or 2001:db8::1).")
        return address
