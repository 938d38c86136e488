"""PostgreSQL's COPY text format, for the seed's rows: tab-separated fields, ``\\N`` for NULL, one line a row.

The seed writes its rows in this form directly (the cheapest for Python to build and for PostgreSQL to read);
``event_from_line`` turns a line back into the event dict ``build_event`` makes, for SQLite and the tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

#: COPY's NULL.
NULL = "\\N"
#: Text that would end a field or a row, or start an escape, and what COPY reads as it.
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "N": None}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_US = 60_000_000


def field(value: object) -> str:
    """``value`` as one field of a COPY text row (None: NULL; booleans: ``t``/``f``)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = "".join(_ESCAPES.get(c, c) for c in text)
    return text


def _unescape(text: str) -> str | None:
    if text == NULL:
        return None
    if "\\" not in text:
        return text
    out, chars = [], iter(text)
    for c in chars:
        out.append(_UNESCAPES[next(chars)] if c == "\\" else c)
    return "".join(out)


def microseconds(when: datetime) -> int:
    """``when`` as whole microseconds since the Unix epoch."""
    return (when - _EPOCH) // timedelta(microseconds=1)


def from_microseconds(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class TimestampFormatter:
    """Formats microseconds since the epoch as ``2026-12-07 13:54:21.123456+00:00``, the minute's text made once
    (a seed's rows come in time order, a few to each minute): a fraction of ``datetime.isoformat``'s cost."""

    def __init__(self):
        self._minute = None
        self._prefix = ""

    def __call__(self, us: int) -> str:
        minute, rest = divmod(us, _MINUTE_US)
        if minute != self._minute:
            self._minute = minute
            self._prefix = from_microseconds(minute * _MINUTE_US).strftime("%Y-%m-%d %H:%M:")
        second, micro = divmod(rest, 1_000_000)
        return f"{self._prefix}{second:02d}.{micro:06d}+00:00"


#: How each column's text becomes the value ``build_event`` gives it (text stays text).
_DECODE = {
    "timestamp": datetime.fromisoformat,
    "user_id": int,
    "status_code": int,
    "duration_ms": int,
    "is_sensitive": lambda text: text == "t",
    "metadata": json.loads,
}


def event_from_line(columns: tuple[str, ...], line: str) -> dict:
    """The event dict of one COPY text row whose fields are ``columns``."""
    event = {}
    for column, text in zip(columns, line.rstrip("\n").split("\t"), strict=True):
        value = _unescape(text)
        event[column] = value if value is None or column not in _DECODE else _DECODE[column](value)
    return event
