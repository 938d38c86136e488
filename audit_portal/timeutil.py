"""Time helpers: every timestamp the app stores is timezone-aware UTC; only pages convert, to the viewer's zone."""

from datetime import UTC, date, datetime, time, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def midnight(day: date) -> datetime:
    """The UTC midnight at which ``day`` starts."""
    return datetime.combine(day, time(), tzinfo=UTC)


@lru_cache(maxsize=1)
def known_timezones() -> dict[str, str]:
    """Every IANA time zone name this machine knows (the ``tzdata`` package guarantees them), by lower case."""
    # "localtime" is the host's own setting, not an IANA name: a user's choice must mean the same everywhere.
    # "Factory" is tzdata's placeholder zone, which browsers' Intl (the live tail formats times) refuses.
    names = (available_timezones() | {"UTC"}) - {"localtime", "Factory"}
    return {name.lower(): name for name in sorted(names)}


def canonical_timezone(name: str) -> str | None:
    """The IANA spelling of ``name`` (any case, e.g. ``europe/paris`` -> ``Europe/Paris``), or None if unknown."""
    return known_timezones().get(str(name).strip().lower())


def zone(name: str | None) -> tzinfo:
    """The time zone called ``name``; UTC for no name or a name this machine cannot load."""
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a path-like or unknown name: show UTC rather than fail a page
        return UTC


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite drops the offset; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a timezone-aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
