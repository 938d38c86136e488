"""How Flask-Login finds the current user."""

from flask import g

from ..audit import remember_actor
from ..extensions import db, login_manager
from ..users.models import User
from ..users.tokens import authenticate_token

login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see that page."
login_manager.login_message_category = "info"
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(session_key: str) -> User | None:
    """Session key is ``<id>.<session_version>``; a bumped version (logout, password change) ends old sessions."""
    user_id, _, version = session_key.partition(".")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version) or not user.can_log_in:
        return None
    remember_actor(user)
    return user


@login_manager.request_loader
def load_user_from_token(req) -> User | None:
    """``Authorization: Bearer <token>`` for scripts. No session is created; no CSRF is needed."""
    header = req.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    g.auth_method = "token"
    g.auth_in_progress = True  # audit events written while authenticating must not ask for current_user
    try:
        token = authenticate_token(raw.strip())
    finally:
        g.auth_in_progress = False
    if token is None:
        g.token_rejected = True
        return None
    # Every event of this request names the token, not only its owner.
    remember_actor(token.user, credential={"kind": "api-token", "id": token.id, "prefix": token.prefix})
    return token.user
