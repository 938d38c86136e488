"""Retention periods: AUDIT_RETENTION_DAYS for every category, AUDIT_RETENTION_DAYS_BY_CATEGORY for the ones that
keep their events longer or shorter, and the cutoffs a purge derives from them.

A purge's cutoffs are ``{category: moment}`` with the key ``"*"`` for every category without a period of its own
(the form ``audit_purges.cutoffs`` stores, and the digests sign); ``past`` and ``held`` are the SQL that picks rows by
them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, true

from ...config import ConfigError
from ..record.enums import Category

#: The cutoffs' key for the categories without a period of their own.
DEFAULT = "*"


def parse_by_category(raw: str) -> dict[str, int]:
    """``"requests=90, security=2555"`` as ``{"requests": 90, "security": 2555}``; a ValueError names the bad part
    (an unknown category, a period that is not a whole number of days from 0, a category given twice)."""
    periods: dict[str, int] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        name, sep, days = part.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise ValueError(f"{part.strip()!r} is not category=days")
        if name not in Category.values():
            raise ValueError(f"{name!r} is not a category (one of {', '.join(Category.values())})")
        if name in periods:
            raise ValueError(f"{name!r} is given twice")
        try:
            periods[name] = int(days.strip())
        except ValueError:
            raise ValueError(f"{name}={days.strip()!r}: the days must be a whole number") from None
        if periods[name] < 0:
            raise ValueError(f"{name}={periods[name]}: the days must not be negative")
    return periods


def check_settings(config) -> None:
    """Refuse to start with a retention setting the purge could not apply."""
    try:
        parse_by_category(config["AUDIT_RETENTION_DAYS_BY_CATEGORY"])
    except ValueError as exc:
        raise ConfigError(f"AUDIT_RETENTION_DAYS_BY_CATEGORY: {exc} (expected e.g. "
                          "'requests=90,authentication=365,security=2555')") from None
    days = config["AUDIT_RETENTION_DAYS"]
    if not isinstance(days, int) or isinstance(days, bool) or days < 0:
        raise ConfigError(f"AUDIT_RETENTION_DAYS: expected a whole number of days from 0, got {days!r}")


def periods(config) -> dict[str, int]:
    """Days kept per category, with ``"*"`` for the rest."""
    return {**parse_by_category(config["AUDIT_RETENTION_DAYS_BY_CATEGORY"]), DEFAULT: config["AUDIT_RETENTION_DAYS"]}


def cutoffs(days: dict[str, int], now: datetime) -> dict[str, datetime]:
    """The moment before which each category's events are past retention."""
    return {key: now - timedelta(days=value) for key, value in days.items()}


def cutoff_for(cutoffs_by_key: dict, category: str | None):
    """The cutoff that applies to ``category``: its own, or the default's (None when neither is given)."""
    if category in cutoffs_by_key:
        return cutoffs_by_key[category]
    return cutoffs_by_key.get(DEFAULT)


def past(t, cutoffs: dict[str, datetime]):
    """SQL: the rows of ``t`` (a table with ``category`` and ``timestamp``) older than their category's cutoff."""
    own = [key for key in cutoffs if key != DEFAULT]
    clauses = [and_(t.c.category == key, t.c.timestamp < cutoffs[key]) for key in own]
    if DEFAULT in cutoffs:
        rest = t.c.category.not_in(own) if own else true()
        clauses.append(and_(rest, t.c.timestamp < cutoffs[DEFAULT]))
    # The bound every clause shares, said once more so that an index on the time can serve it.
    return and_(t.c.timestamp < max(cutoffs.values()), or_(*clauses))


def held(t, holds: list[tuple[datetime, datetime]]):
    """SQL: the rows of ``t`` inside one of ``holds`` (both ends included); None without holds."""
    return or_(*[t.c.timestamp.between(start, end) for start, end in holds]) if holds else None
