"""Jinja filters shared by every page (the audit package adds its own)."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from .timeutil import utcnow


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


def init_app(app: Flask) -> None:
    app.add_template_filter(timeago, "timeago")
