"""How an event reads on a page, in a chart or in an API item: colours (the one place), actor names, sentences."""

from __future__ import annotations

from .enums import ErrorSeverity, Status

#: Badge colours. Colour is never the only signal: badges also carry their text.
STATUS_COLOURS = {Status.SUCCESS: "green", Status.FAILURE: "red", Status.ERROR: "orange"}
SEVERITY_COLOURS = {ErrorSeverity.CRITICAL: "red", ErrorSeverity.ERROR: "orange", ErrorSeverity.WARNING: "yellow"}
#: The fill of each colour where a page draws rather than styles it (the error chart's bars and legend).
FILLS = {"red": "#dc3545", "orange": "#fd7e14", "yellow": "#ffc107", "green": "#198754", "grey": "#6c757d"}


#: The same, by the stored value (a dictionary lookup: a stream colours every event it sends).
_STATUS_BY_VALUE = {status.value: colour for status, colour in STATUS_COLOURS.items()}
_SEVERITY_BY_VALUE = {severity.value: colour for severity, colour in SEVERITY_COLOURS.items()}


def status_colour(status: str) -> str:
    """The badge colour of a status; grey for a value that is not a Status."""
    return _STATUS_BY_VALUE.get(str(status), "grey")


def severity_colour(severity: str | None) -> str | None:
    """The badge colour of a severity; None for none (or a value that is not an ErrorSeverity)."""
    return _SEVERITY_BY_VALUE.get(str(severity)) if severity else None


def severity_fill(severity: str) -> str:
    """The fill colour of a severity in a chart."""
    return FILLS[SEVERITY_COLOURS[ErrorSeverity(severity)]]


def status_fill(status: str) -> str:
    """The fill colour of a status in a chart (the histogram's stacks)."""
    return FILLS[status_colour(status)]


#: How a personal value an erasure removed reads on a page, in an export and in the API (``integrity/erasure.py``).
ERASED = "[erased]"


def erased_fields(log) -> frozenset[str]:
    """The personal fields of ``log`` an erasure removed: the keys of its link's ``erased`` (``AuditLog.erasure``,
    loaded with the page of events; never loaded here, so an object without it has none)."""
    erasure = getattr(log, "__dict__", {}).get("erasure")
    return frozenset(erasure.erased or ()) if erasure is not None else frozenset()


def shown(log, field: str):
    """The value of a personal column as pages, exports and the API show it: "[erased]" where an erasure left NULL
    (username, ip_address, user_agent); the description and metadata carry "[erased]" in their text already."""
    value = getattr(log, field)
    return ERASED if value is None and field in erased_fields(log) else value


def actor_name(log) -> str:
    if log.username:
        return log.username
    if "username" in erased_fields(log):
        return ERASED
    if log.user_id:
        return f"user #{log.user_id}"
    return "anonymous"


def readable_description(log) -> str:
    """The description, prefixed with the actor unless it already names them."""
    actor = actor_name(log)
    text = log.description or f"{log.action_type} on {log.resource_type}"
    return text if text.startswith(actor) else f"{actor}: {text}"


#: The Jinja filters every page uses (registered by ``audit.init_app``).
TEMPLATE_FILTERS = {"status_colour": status_colour, "severity_colour": severity_colour, "actor": actor_name,
                    "readable": readable_description, "shown": shown}
