"""Stream destinations: create, change, pause, resume, rotate a secret, send a test message, remove. Each change
records its STREAM_* event in the same transaction (secrets and header values never in it); the caller commits."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import func, select

from ...extensions import db
from ...timeutil import utcnow
from ..delivery.webhook import DeliveryFailed, new_secret
from ..integrity.seal import seal
from ..record.enums import ActionType, ResourceType, Status
from ..record.events import build_event
from ..record.models import AuditChainLink, AuditLog
from ..write.service import log_audit
from .dispatcher import Delivery, Settings, lag
from .models import StreamDestination, StreamKind
from .schemas import StreamUpdateSchema


class StreamError(ValueError):
    """A rule was broken; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


class NotFound(LookupError):
    pass


def file_dir() -> Path:
    return Path(current_app.config["AUDIT_STREAM_FILE_DIR"])


def _check_path(path: str, exclude_id: int | None = None) -> str:
    """A file destination's path: a file (not a directory) inside AUDIT_STREAM_FILE_DIR once resolved, that no
    other destination writes."""
    base = file_dir().resolve()
    target = (base / path).resolve() if "\x00" not in path else base
    if Path(path).is_absolute() or target == base or not target.is_relative_to(base) or target.is_dir():
        raise StreamError("path", f"Must be a file name or relative path of a file inside AUDIT_STREAM_FILE_DIR ({base}).")
    query = select(StreamDestination.path).where(StreamDestination.path.is_not(None))
    if exclude_id is not None:
        query = query.where(StreamDestination.id != exclude_id)
    if any((base / other).resolve() == target for other in db.session.scalars(query)):
        raise StreamError("path", "Another destination writes that file.")
    return path


def _unique(name: str, exclude_id: int | None = None) -> None:
    query = select(StreamDestination.id).where(func.lower(StreamDestination.name) == name.lower())
    if exclude_id is not None:
        query = query.where(StreamDestination.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise StreamError("name", f"There is already a destination called {name!r}.")


def describe(destination: StreamDestination) -> dict:
    """What an audit event says about a destination: never a secret or a header value."""
    return {"name": destination.name, "kind": destination.kind, "url": destination.url, "path": destination.path,
            "format": destination.format, "filters": dict(destination.filters or {}),
            "header_names": sorted(destination.headers or {}), "paused": destination.paused}


def _record(actor, action: ActionType, destination: StreamDestination, text: str, metadata: dict) -> None:
    log_audit(actor.id if actor else None, action, ResourceType.STREAM, destination.id, text, metadata,
              username=actor.username if actor else None, is_sensitive=True, transactional=True, via_outbox=False)


def with_lag(destination: StreamDestination) -> StreamDestination:
    """The destination, with ``lag_events`` and ``lag_seconds`` set for display."""
    destination.lag_events, destination.lag_seconds = lag(destination)
    return destination


def list_destinations() -> list[StreamDestination]:
    return [with_lag(d) for d in db.session.scalars(select(StreamDestination).order_by(StreamDestination.name))]


def get_destination(destination_id: int) -> StreamDestination:
    destination = db.session.get(StreamDestination, destination_id) if 0 < destination_id < 2**31 else None
    if destination is None:
        raise NotFound(f"There is no stream destination with id {destination_id}.")
    return with_lag(destination)


def behind(cut_seq: int) -> list[tuple[str, int]]:
    """(name, links) of each destination that has not yet been sent the links up to ``cut_seq`` (a retention
    purge that cuts the chain there takes them away for good)."""
    rows = db.session.execute(select(StreamDestination.name, StreamDestination.cursor_seq)
                              .where(StreamDestination.cursor_seq < cut_seq).order_by(StreamDestination.name))
    return [(name, cut_seq - cursor) for name, cursor in rows]


def find_destination(name: str) -> StreamDestination:
    destination = db.session.scalar(select(StreamDestination).where(StreamDestination.name == name))
    if destination is None:
        raise NotFound(f"There is no stream destination called {name!r}.")
    return destination


def create_destination(actor, data: dict) -> tuple[StreamDestination, str | None]:
    """A new destination from what ``StreamCreateSchema`` loaded; returns it and a webhook's secret (shown once).
    ``start="now"`` delivers the events sealed from now on; ``"beginning"`` the stored trail first."""
    _unique(data["name"])
    path = _check_path(data["path"]) if data.get("path") else None
    secret = new_secret() if data["kind"] == StreamKind.WEBHOOK else None
    cursor = 0
    if data.get("start", "now") == "now":
        seal()
        cursor = db.session.scalar(select(func.max(AuditChainLink.seq))) or 0
    destination = StreamDestination(
        name=data["name"], kind=data["kind"], url=data.get("url"), path=path, format=data["format"],
        filters=data.get("filters") or {}, headers=data.get("headers") or {}, secret=secret,
        ca_file=data.get("ca_file"), paused=False, cursor_seq=cursor, resend_seq=cursor, failures=0)
    db.session.add(destination)
    db.session.flush()
    _record(actor, ActionType.STREAM_CREATE, destination,
            f"Stream destination {destination.name} ({destination.kind}, {destination.format}) added",
            {"new": describe(destination), "start": data.get("start", "now")})
    db.session.flush()
    return with_lag(destination), secret


def update_destination(actor, destination: StreamDestination, data: dict) -> StreamDestination:
    """Change what ``StreamUpdateSchema`` loaded; the kind stays, so its rules are checked against it."""
    try:
        StreamUpdateSchema().check_target(destination.kind, data, destination.url)
    except ValidationError as exc:
        raise StreamError(exc.field_name, " ".join(map(str, exc.messages))) from None
    if "name" in data:
        _unique(data["name"], destination.id)
    if "path" in data:
        _check_path(data["path"], destination.id)
    old = describe(destination)
    old_headers, new_headers = destination.headers or {}, data.get("headers", destination.headers or {})
    #: Names of the headers added, removed or given another value (values are never recorded).
    headers_changed = sorted(n for n in {*old_headers, *new_headers} if old_headers.get(n) != new_headers.get(n))
    for key in ("name", "url", "path", "format", "filters", "headers", "ca_file"):
        if key in data:
            setattr(destination, key, data[key])
    new = describe(destination)
    changed = {key for key in new if new[key] != old[key]} | ({"headers"} if headers_changed else set())
    if changed & {"url", "path", "format", "filters"}:
        # A webhook batch waiting for a retry was built from the old settings: it is rebuilt under a new
        # delivery id (a receiver that drops repeated ids must not drop the events the change added).
        destination.pending_upto_seq = destination.pending_delivery_id = None
    if changed:
        destination.failures, destination.next_attempt_at = 0, None  # try the new settings at once
        metadata = {"old": {k: old[k] for k in changed if k in old}, "new": {k: new[k] for k in changed if k in new}}
        if headers_changed:
            metadata["changed_headers"] = headers_changed
        _record(actor, ActionType.STREAM_UPDATE, destination, f"Stream destination {destination.name} changed "
                f"({', '.join(sorted(changed))})", metadata)
    db.session.flush()
    return with_lag(destination)


def set_paused(actor, destination: StreamDestination, paused: bool) -> StreamDestination:
    """Pause (nothing is sent; events wait, unless a retention purge removes them first) or resume."""
    if destination.paused != paused:
        destination.paused = paused
        if not paused:
            destination.failures, destination.next_attempt_at = 0, None
        verb = "paused" if paused else "resumed"
        _record(actor, ActionType.STREAM_UPDATE, destination, f"Stream destination {destination.name} {verb}",
                {"old": {"paused": not paused}, "new": {"paused": paused}})
        db.session.flush()
    return with_lag(destination)


def rotate_secret(actor, destination: StreamDestination) -> str:
    """A new signing secret for a webhook (the old one stops working at once); returned to show once."""
    if destination.kind != StreamKind.WEBHOOK:
        raise StreamError("kind", "Only a webhook destination has a signing secret.")
    destination.secret = new_secret()
    _record(actor, ActionType.STREAM_UPDATE, destination, f"Signing secret of stream destination "
            f"{destination.name} rotated", {"rotated": "secret"})
    db.session.flush()
    return destination.secret


def delete_destination(actor, destination: StreamDestination) -> None:
    _record(actor, ActionType.STREAM_DELETE, destination, f"Stream destination {destination.name} removed",
            {"old": describe(destination)})
    db.session.delete(destination)
    db.session.flush()


def send_test(actor, destination: StreamDestination) -> None:
    """Send one test message now, in the destination's format (it is not stored, and moves no cursor). Raises
    ``StreamError`` naming the destination's url or path when the receiver does not take it."""
    event = build_event(ActionType.STREAM_UPDATE, ResourceType.STREAM, destination.id,
                        f"Test message for stream destination {destination.name}", timestamp=utcnow(),
                        user_id=actor.id if actor else None, username=actor.username if actor else None,
                        metadata={"test": True})
    message = AuditLog(**{key: value for key, value in event.items() if key != "metadata"},
                       event_metadata=event["metadata"])
    delivery = Delivery(destination.id, Settings.from_config(current_app.config))
    try:
        delivery.send_now(destination, [message])
    except DeliveryFailed as exc:
        raise StreamError("path" if destination.kind == StreamKind.FILE else "url", f"The test failed: {exc}") from None
    finally:
        delivery.close()
    log_audit(actor.id if actor else None, ActionType.STREAM_UPDATE, ResourceType.STREAM, destination.id,
              f"Test message sent to stream destination {destination.name}", {"test": True},
              status=Status.SUCCESS, username=actor.username if actor else None)
