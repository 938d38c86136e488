"""Building an event: the one function that turns what happened into a safe, bounded row."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime

from . import models as m
from .context import client_ip, current_actor, request_id, user_agent
from .enums import ActionType, ErrorSeverity, ResourceType, Status, category_for
from .redaction import redact, redact_text

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
TRUNCATED = "…[truncated]"
METADATA_MAX_BYTES = 16_000


def single_line(value: object, limit: int) -> str | None:
    """Bound ``value`` to ``limit`` characters and escape control characters (CR, LF, NUL, ...),
    so a header or a name can never forge a second line in a log or a CSV file."""
    if value is None:
        return None
    text = _CONTROL_RE.sub(lambda ch: f"\\x{ord(ch.group()):02x}", str(value))
    return bound(text, limit)


def bound(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def _bounded_metadata(metadata) -> dict | None:
    if metadata is None:
        return None
    clean = redact(metadata)
    if not isinstance(clean, dict):
        clean = {"value": clean}
    encoded = json.dumps(clean, default=str)
    if len(encoded) > METADATA_MAX_BYTES:
        return {"truncated": True, "preview": encoded[: METADATA_MAX_BYTES // 2]}
    return json.loads(encoded)


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
    allowed values); text is redacted, single-line fields sanitised, everything bounded."""
    action = ActionType.parse(action_type)
    resource = ResourceType.parse(resource_type)
    outcome = Status.parse(status)
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "timestamp": timestamp,
        "user_id": user_id,
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
        "error_type": single_line(error_type, m.ERROR_TYPE_MAX),
        "stack_trace": bound(redact_text(stack_trace), m.STACK_TRACE_MAX),
        "fingerprint": fingerprint,
        "request_id": request_id_,
        "http_method": single_line(http_method, 10),
        "path": single_line(redact_text(path), m.PATH_MAX),
        "status_code": status_code,
        "duration_ms": duration_ms,
    }


def request_fields() -> dict:
    """The actor and request context of the current request, as ``build_event`` keyword arguments."""
    uid, uname = current_actor()
    return {
        "user_id": uid,
        "username": uname,
        "ip_address": client_ip(),
        "user_agent_": user_agent(),
        "request_id_": request_id(),
    }
