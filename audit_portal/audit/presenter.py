"""How an event reads on a page or in an API item: colours, actor names, readable sentences."""

from __future__ import annotations

from .enums import severity_colour as _severity_colour
from .enums import status_colour as _status_colour


def status_colour(status: str) -> str:
    try:
        return _status_colour(status)
    except ValueError:
        return "grey"


def severity_colour(severity: str | None) -> str | None:
    try:
        return _severity_colour(severity)
    except ValueError:
        return None


def actor_name(log) -> str:
    if log.username:
        return log.username
    if log.user_id:
        return f"user #{log.user_id}"
    return "anonymous"


def readable_description(log) -> str:
    """The description, prefixed with the actor unless it already names them."""
    actor = actor_name(log)
    text = log.description or f"{log.action_type} on {log.resource_type}"
    return text if text.startswith(actor) else f"{actor}: {text}"
