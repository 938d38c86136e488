"""API token operations. The caller commits."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from ..audit import ActionType, ResourceType, Status, log_audit
from ..extensions import db
from ..timeutil import utcnow
from .models import TOKEN_NAME_MAX, ApiToken, User
from .rules import NotFound, ServiceError

TOKEN_PREFIX = "ap_"
#: last_used_at is written at most this often per token, so using a token does not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


def create_token(actor: User | None, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns (token row, the secret to show once). Records TOKEN_CREATE."""
    name = (name or "").strip()
    if len(name) > TOKEN_NAME_MAX or any(ord(c) < 32 for c in name):
        raise ServiceError("name", f"Token name must be at most {TOKEN_NAME_MAX} printable characters.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, prefix=raw[:10], token_hash=hash_token(raw))
    db.session.add(token)
    db.session.flush()
    who = actor.username if actor else "the command line"
    log_audit(actor.id if actor else None, ActionType.TOKEN_CREATE, ResourceType.API_TOKEN, token.id,
              f"{who} created API token {token.prefix}… ({name or 'unnamed'}) for {user.username}",
              {"token_owner": user.username, "name": name, "prefix": token.prefix},
              username=actor.username if actor else None, is_sensitive=True, transactional=True)
    db.session.flush()
    return token, raw


def get_token(token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"No API token with id {token_id}.")
    return token


def revoke_token(actor: User, token: ApiToken) -> ApiToken:
    """Revoke a token at once; records TOKEN_REVOKE."""
    if token.is_revoked:
        return token
    token.revoked_at = utcnow()
    log_audit(actor.id, ActionType.TOKEN_REVOKE, ResourceType.API_TOKEN, token.id,
              f"{actor.username} revoked API token {token.prefix}… of {token.user.username}",
              {"token_owner": token.user.username, "prefix": token.prefix}, username=actor.username,
              is_sensitive=True, transactional=True)
    db.session.flush()
    return token


def tokens_for(user: User) -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())))


def authenticate_token(raw: str) -> ApiToken | None:
    """The valid token ``raw`` is, or None (recorded as TOKEN_AUTH_FAILED) when it is bad or revoked."""
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(raw))) if raw else None
    reason = None
    if token is None:
        reason = "unknown token"
    elif token.is_revoked:
        reason = "revoked token"
    elif not token.user.can_log_in:
        reason = "token owner cannot log in"
    if reason:
        log_audit(None, ActionType.TOKEN_AUTH_FAILED, ResourceType.API_TOKEN, token.id if token else None,
                  f"Rejected API token ({reason})", {"reason": reason, "prefix": (raw or "")[:10]},
                  status=Status.FAILURE, is_sensitive=True)
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        # Its own short transaction: the request's session (and its loaded user) stays as it is.
        with db.engine.begin() as connection:
            connection.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
    return token
