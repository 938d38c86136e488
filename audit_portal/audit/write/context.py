"""Request context for audit events: the one place that decides the client IP, user agent and request id."""

from __future__ import annotations

import functools

from flask import current_app, g, has_request_context, request
from flask_login import current_user

from ..record.events import canonical_ip, new_event_id

REQUEST_ID_HEADER = "X-Request-ID"


def client_ip() -> str | None:
    """The client's IP, in its canonical text (``canonical_ip``). ``X-Forwarded-For`` is honoured only through
    ``TRUSTED_PROXY_COUNT`` proxies."""
    if not has_request_context():
        return None
    return _client_ip(request._get_current_object(), current_app.config.get("TRUSTED_PROXY_COUNT", 0))


def _client_ip(req, trusted: int) -> str | None:
    remote = req.environ.get("REMOTE_ADDR")
    if trusted > 0:
        forwarded = [p.strip() for p in req.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
        # Each trusted proxy appends the address it received the request from; the client is the
        # entry just before the ones our own proxies added.
        if len(forwarded) >= trusted:
            candidate = _canonical_ip(forwarded[-trusted])
            if candidate:
                return candidate
    return _canonical_ip(remote) if remote else None


@functools.lru_cache(maxsize=4096)
def _canonical_ip(value: str) -> str | None:
    """``canonical_ip(value)``, cached: a server sees the same few addresses again and again, and parsing one
    costs more than the rest of an event's request context."""
    return canonical_ip(value)


def user_agent() -> str | None:
    """The raw User-Agent header (the event builder bounds and sanitises it)."""
    if not has_request_context():
        return None
    return request.headers.get("User-Agent")


def request_id() -> str | None:
    """One id per HTTP request, shared by every event it produces."""
    if not has_request_context():
        return None
    return _request_id(g._get_current_object())


def _request_id(store) -> str:
    rid = store.get("audit_request_id")
    if rid is None:
        # Time-ordered like event ids (UUID 7): the request_id index then grows at its right edge instead of
        # each insert touching a random page of it (``record.events.new_event_id``).
        rid = store.audit_request_id = new_event_id()
    return rid


def current_actor() -> tuple[int | None, str | None]:
    """(user id, username) of the logged-in user, or (None, None).

    The loaders snapshot the actor when the request authenticates (``remember_actor``): reading it back
    costs nothing, whereas ``current_user`` after a commit reloads the user from the database; and a
    logout request stays attributed to the user who made it."""
    if not has_request_context():
        return None, None
    return _actor(g._get_current_object())


def _actor(store) -> tuple[int | None, str | None]:
    if store.get("auth_in_progress"):
        return None, None
    if store.get("audit_actor"):
        return store.audit_actor
    try:
        if current_user and current_user.is_authenticated:
            return current_user.id, current_user.username
    except Exception:  # noqa: BLE001 - a broken session must not break auditing
        return None, None
    return None, None


def request_fields() -> dict:
    """The actor and request context of the current request, as ``build_event`` keyword arguments, plus
    ``credential``: ``{"kind": "api-token", "id", "prefix"}`` when the request authenticated with an API token
    (events store it under the metadata key ``client``: names such as ``token`` would be redacted). Reads the
    request, ``g`` and the config once each: this runs for every audited request."""
    if not has_request_context():
        return {"user_id": None, "username": None, "ip_address": None, "user_agent_": None, "request_id_": None,
                "credential": None}
    req, store = request._get_current_object(), g._get_current_object()
    uid, uname = _actor(store)
    return {
        "user_id": uid,
        "username": uname,
        "ip_address": _client_ip(req, current_app.config.get("TRUSTED_PROXY_COUNT", 0)),
        "user_agent_": req.headers.get("User-Agent"),
        "request_id_": _request_id(store),
        "credential": store.get("audit_credential"),
    }


def remember_actor(user, credential: dict | None = None) -> None:
    """Called by the user loaders: who this request acts as (and with which API token, if any), for every
    audit event it produces."""
    g.audit_actor = (user.id, user.username)
    g.audit_credential = credential
