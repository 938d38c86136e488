"""Jinja filters shared by every page (the audit package adds its own): relative times, and times in the
viewer's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from flask_login import current_user

from .timeutil import utcnow, zone

DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def timeago(when: datetime | None, now: datetime | None = None) -> str:
    """'5 minutes ago', 'in 2 hours', 'just now'."""
    if when is None:
        return ""
    seconds = int(((now or utcnow()) - when).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    for unit, size in (("year", 31_536_000), ("month", 2_592_000), ("week", 604_800), ("day", 86_400),
                       ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size) if unit == "minute" else seconds // size
            label = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {label}" if future else f"{label} ago"
    return "just now"


def viewer_timezone() -> str:
    """The name of the zone pages show times in: the logged-in user's choice, UTC for anyone else."""
    return getattr(current_user, "timezone", None) or "UTC"


def localtime(when: datetime | None, fmt: str = DEFAULT_TIME_FORMAT) -> str:
    """``when`` (aware, or naive meaning UTC) formatted in the viewer's zone; only pages convert, never the API."""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(zone(viewer_timezone())).strftime(fmt)


def init_app(app: Flask) -> None:
    app.add_template_filter(timeago, "timeago")
    app.add_template_filter(localtime, "localtime")
    # A global, not a context variable: the macros that label time columns are imported without context.
    app.add_template_global(viewer_timezone, "viewer_timezone")
