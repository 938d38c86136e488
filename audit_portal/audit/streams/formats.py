"""An event as a destination reads it: ``json`` (the API's item), ``ecs`` (Elastic Common Schema) or ``cef``
(ArcSight Common Event Format). docs/streams.md maps every field."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC

from ..record.enums import ActionType, ErrorSeverity, ResourceType, Status
from ..record.presentation import (
    ERASED,
    actor_name,
    erased_fields,
    readable_description,
    severity_colour,
    shown,
    status_colour,
)

PRODUCT, VENDOR, VERSION = "audit_portal", "audit_portal", "1.0"
ECS_VERSION = "8.11.0"

A = ActionType
#: ECS ``event.category`` and ``event.type`` per action (each type is one ECS expects for one of the categories).
_ECS_KINDS: dict[ActionType, tuple[list[str], list[str]]] = {
    A.LOGIN: (["authentication", "session"], ["start"]),
    A.LOGOUT: (["authentication", "session"], ["end"]),
    A.LOGIN_FAILED: (["authentication"], ["start"]),
    A.LOGIN_THROTTLED: (["authentication", "intrusion_detection"], ["denied"]),
    A.TOKEN_AUTH_FAILED: (["authentication"], ["start"]),
    A.PERMISSION_DENIED: (["api"], ["denied"]),
    A.PASSWORD_CHANGE: (["iam"], ["user", "change"]),
    A.ROLE_CHANGE: (["iam"], ["user", "change", "group"]),
    A.STATUS_CHANGE: (["iam"], ["user", "change"]),
    A.ACTIVATE: (["iam"], ["user", "change"]),
    A.DEACTIVATE: (["iam"], ["user", "change"]),
    A.TOKEN_CREATE: (["iam"], ["user", "creation"]),
    A.TOKEN_REVOKE: (["iam"], ["user", "deletion"]),
    A.READ: (["api"], ["access"]),
    A.EXPORT: (["database"], ["access"]),
    A.REQUEST: (["web"], ["access"]),
    A.ERROR_OCCURRED: (["web"], ["error"]),
    A.EXCEPTION_RAISED: (["web"], ["error"]),
    A.RETENTION_PURGE: (["database"], ["change"]),
    A.CHAIN_CHECKPOINT: (["database"], ["info"]),
    A.AUDIT_VERIFY: (["database"], ["info"]),
    A.AUDIT_FAILURE: (["database"], ["error"]),
    A.STREAM_CREATE: (["configuration"], ["creation"]),
    A.STREAM_UPDATE: (["configuration"], ["change"]),
    A.STREAM_DELETE: (["configuration"], ["deletion"]),
    A.ALERT_TRIGGERED: (["intrusion_detection"], ["info"]),
    A.ALERT_ACKNOWLEDGED: (["intrusion_detection"], ["info"]),
    A.ALERT_RESOLVED: (["intrusion_detection"], ["info"]),
    A.ALERT_RULE_CREATE: (["configuration"], ["creation"]),
    A.ALERT_RULE_UPDATE: (["configuration"], ["change"]),
    A.ALERT_RULE_DELETE: (["configuration"], ["deletion"]),
    A.DIGEST_SIGNED: (["database"], ["info"]),
    A.HOLD_CREATE: (["configuration"], ["creation"]),
    A.HOLD_RELEASE: (["configuration"], ["deletion"]),
    A.ERASURE_REQUEST: (["database"], ["info"]),
    A.ERASURE_REJECT: (["database"], ["info"]),
    A.ERASURE: (["database"], ["change"]),
}
#: Creation, change and deletion: of a user (``iam``), of anything else (``configuration``).
_CHANGES = {A.CREATE: "creation", A.UPDATE: "change", A.DELETE: "deletion"}
_OUTCOMES = {Status.SUCCESS.value: "success", Status.FAILURE.value: "failure", Status.ERROR.value: "failure"}


_ECS_BY_VALUE = {action.value: kinds for action, kinds in _ECS_KINDS.items()}
_CHANGES_BY_VALUE = {action.value: change for action, change in _CHANGES.items()}


def ecs_kind(action: str, resource: str) -> tuple[list[str], list[str]]:
    """(``event.category``, ``event.type``) of an event; ``host``/``info`` for an action this version does not
    know (a row written by a newer one, say)."""
    change = _CHANGES_BY_VALUE.get(action)
    if change:
        return (["iam"], ["user", change]) if resource == ResourceType.USER.value else (["configuration"], [change])
    return _ECS_BY_VALUE.get(action, (["host"], ["info"]))


def attempted_username(log) -> str | None:
    """The name the event is about: the actor's snapshot, or a failed login's attempted name (as typed); "[erased]"
    where an erasure removed the snapshot."""
    if log.username:
        return log.username
    if "username" in erased_fields(log):
        return ERASED
    metadata = log.event_metadata if isinstance(log.event_metadata, dict) else {}
    attempted = metadata.get("attempted_username")
    return attempted if isinstance(attempted, str) else None


def _timestamp(log) -> str:
    return log.timestamp.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


#: The columns of an API item, as the item names them (``metadata`` is the model's ``event_metadata``).
_ITEM_COLUMNS = ("id", "event_id", "user_id", "username", "action_type", "resource_type", "resource_id", "category",
                 "description", "ip_address", "user_agent", "status", "is_sensitive", "severity", "error_type",
                 "stack_trace", "fingerprint", "request_id", "http_method", "path", "status_code", "duration_ms")


#: The personal columns an erasure may leave NULL: "[erased]" in the items, as on the pages and in the exports.
_PERSONAL_COLUMNS = ("username", "ip_address", "user_agent")


def item(log) -> dict:
    """The API's item (``AuditLogSchema().dump(log)``, which a test holds it to), built directly: a stream
    formats every event, and marshmallow's generic dump costs several times more."""
    data = {name: getattr(log, name) for name in _ITEM_COLUMNS}
    for name in _PERSONAL_COLUMNS:
        data[name] = shown(log, name)
    data["timestamp"] = log.timestamp.isoformat()
    data["metadata"] = log.event_metadata
    data["status_color"] = status_colour(log.status)
    data["severity_color"] = severity_colour(log.severity)
    data["readable_description"] = readable_description(log)
    data["actor"] = actor_name(log)
    return data


def to_json(log) -> str:
    """The API's item (``event_id`` included)."""
    return json.dumps(item(log), ensure_ascii=False, separators=(",", ":"))


def _set(target: dict, dotted: str, value) -> None:
    if value is None:
        return
    *parents, leaf = dotted.split(".")
    for name in parents:
        target = target.setdefault(name, {})
    target[leaf] = value


def ecs_document(log) -> dict:
    """The event as an ECS document (nested objects, ECS field types)."""
    categories, types = ecs_kind(log.action_type, log.resource_type)
    doc: dict = {"@timestamp": _timestamp(log), "message": log.description}
    path, _, query = (log.path or "").partition("?")
    metadata = log.event_metadata if isinstance(log.event_metadata, dict) else None
    for name, value in (
        ("ecs.version", ECS_VERSION), ("event.kind", "event"), ("event.module", PRODUCT),
        ("event.dataset", "audit_portal.audit"),
        ("event.id", log.event_id), ("event.action", log.action_type.lower()), ("event.category", categories),
        ("event.type", types), ("event.outcome", _OUTCOMES.get(log.status, "unknown")),
        ("event.severity", cef_severity(log)),
        ("event.duration", log.duration_ms * 1_000_000 if log.duration_ms is not None else None),
        ("user.id", str(log.user_id) if log.user_id is not None else None), ("user.name", attempted_username(log)),
        # An erased address has no place in ``source.ip`` (an ``ip`` field): ``audit_portal.erased`` names it.
        ("source.ip", log.ip_address), ("user_agent.original", shown(log, "user_agent")), ("url.path", path or None),
        ("url.query", query or None), ("http.request.method", log.http_method),
        ("http.response.status_code", log.status_code), ("error.type", log.error_type),
        ("error.message", (metadata or {}).get("message") if log.error_type else None),
        ("error.stack_trace", log.stack_trace), ("trace.id", log.request_id),
        ("log.level", (log.severity or "").lower() or None),
        ("audit_portal.category", log.category), ("audit_portal.resource.type", log.resource_type),
        ("audit_portal.resource.id", log.resource_id), ("audit_portal.status", log.status),
        ("audit_portal.sensitive", bool(log.is_sensitive)), ("audit_portal.fingerprint", log.fingerprint),
        # As JSON text: its shape differs from event to event, which an index's mapping of an object would refuse.
        ("audit_portal.metadata", json.dumps(metadata, ensure_ascii=False) if metadata is not None else None),
        ("audit_portal.erased", sorted(erased_fields(log)) or None),
    ):
        _set(doc, name, value)
    if doc.get("user", {}).get("name"):
        doc["related"] = {"user": [doc["user"]["name"]]}
    return doc


def to_ecs(log) -> str:
    return json.dumps(ecs_document(log), ensure_ascii=False, separators=(",", ":"))


# -- CEF ----------------------------------------------------------------------------------------------------


def cef_severity(log) -> int:
    """0-10: errors by their severity, refusals by how alarming they are, the rest low."""
    if log.status == Status.ERROR.value:
        return {ErrorSeverity.CRITICAL.value: 10, ErrorSeverity.ERROR.value: 7, ErrorSeverity.WARNING.value: 4}.get(
            log.severity, 7)
    if log.status == Status.FAILURE.value:
        return 7 if log.action_type in (A.LOGIN_THROTTLED, A.TOKEN_AUTH_FAILED) else 5
    return 3


def cef_header(value: object) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped; a line break (not allowed there) becomes a space."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def cef_value(value: object) -> str:
    """A CEF extension value: ``\\`` and ``=`` escaped, line breaks written as ``\\n`` and ``\\r``."""
    text = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _ip_fields(ip: str | None) -> list[tuple[str, object]]:
    if not ip:
        return []
    try:
        version = ipaddress.ip_address(ip).version
    except ValueError:
        return []
    return [("src", ip)] if version == 4 else [("c6a2", ip), ("c6a2Label", "Source IPv6 Address")]


def to_cef(log) -> str:
    """``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension``."""
    name = (log.description or f"{log.action_type} {log.resource_type}")[:512]
    header = "|".join(cef_header(part) for part in (
        "CEF:0", VENDOR, PRODUCT, VERSION, log.action_type, name, cef_severity(log)))
    metadata = log.event_metadata if isinstance(log.event_metadata, dict) else {}
    fields: list[tuple[str, object]] = [
        ("rt", int(log.timestamp.timestamp() * 1000)), ("externalId", log.event_id), ("act", log.action_type),
        ("cat", log.category), ("outcome", _OUTCOMES.get(log.status, "unknown")), ("suser", attempted_username(log)),
        ("suid", log.user_id), *_ip_fields(log.ip_address), ("requestClientApplication", shown(log, "user_agent")),
        ("requestMethod", log.http_method), ("request", log.path), ("msg", log.description),
        ("cs1", log.resource_type), ("cs1Label", "resourceType"), ("cs2", log.resource_id), ("cs2Label", "resourceId"),
        ("cs3", log.request_id), ("cs3Label", "requestId"), ("cs4", log.error_type), ("cs4Label", "errorType"),
        ("cn1", log.status_code), ("cn1Label", "httpStatus"),
        ("reason", metadata.get("message") if log.error_type else None),
    ]
    present = {key for key, value in fields if value is not None and not key.endswith("Label")}
    extension = " ".join(f"{key}={cef_value(value)}" for key, value in fields
                         if value is not None and (not key.endswith("Label") or key.removesuffix("Label") in present))
    return f"{header}|{extension}"


FORMATTERS = {"json": to_json, "ecs": to_ecs, "cef": to_cef}


# -- When an event cannot be formatted ------------------------------------------------------------------------


def format_event(fmt: str, log) -> tuple[str, str | None]:
    """(the event in ``fmt``, None); or, when formatting it fails (a bug, a value no format foresaw), a small
    message in ``fmt`` that still carries its id, time and action, and what went wrong. One such event must not
    hold back every event after it, and skipping it would break the promise that every event is delivered."""
    try:
        return FORMATTERS[fmt](log), None
    except Exception as exc:  # noqa: BLE001 - any failure gets the fallback message, and is reported
        problem = f"{type(exc).__name__}: {exc}"
        return _FALLBACKS[fmt](log, problem), problem


def _fallback_fields(log) -> tuple[str, str, str]:
    timestamp = getattr(log, "timestamp", None)
    when = timestamp.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z") if timestamp else ""
    return str(getattr(log, "event_id", "")), when, str(getattr(log, "action_type", ""))


def _json_fallback(log, problem: str) -> str:
    event_id, when, action = _fallback_fields(log)
    return json.dumps({"event_id": event_id, "timestamp": when, "action_type": action, "format_error": problem},
                      ensure_ascii=False, separators=(",", ":"))


def _ecs_fallback(log, problem: str) -> str:
    event_id, when, action = _fallback_fields(log)
    return json.dumps({"@timestamp": when, "ecs": {"version": ECS_VERSION},
                       "event": {"id": event_id, "action": action.lower(), "kind": "pipeline_error",
                                 "module": PRODUCT, "dataset": "audit_portal.audit"},
                       "error": {"message": f"the event could not be formatted: {problem}"}},
                      ensure_ascii=False, separators=(",", ":"))


def _cef_fallback(log, problem: str) -> str:
    event_id, _, action = _fallback_fields(log)
    header = "|".join(cef_header(part) for part in (
        "CEF:0", VENDOR, PRODUCT, VERSION, action, "Event could not be formatted", 5))
    return f"{header}|externalId={cef_value(event_id)} act={cef_value(action)} reason={cef_value(problem)}"


_FALLBACKS = {"json": _json_fallback, "ecs": _ecs_fallback, "cef": _cef_fallback}
