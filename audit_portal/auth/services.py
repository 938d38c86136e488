"""Authentication operations. The caller (a view or a command) owns the commit."""

from __future__ import annotations

from ..audit import ActionType, ResourceType, log_audit, log_login, log_login_failed, log_logout
from ..extensions import db
from ..timeutil import utcnow
from ..users.models import User
from ..users.passwords import burn_verification_time, hash_password, verify_password
from ..users.rules import ServiceError, check_password_strength
from ..users.services import find_user_by_username


class LoginFailed(Exception):
    """Wrong username or password, or an account that may not log in. The message is safe to show."""


GENERIC_FAILURE = "Invalid username or password."


def authenticate(username: str, password: str) -> User:
    """Return the user if the credentials are right and the account may log in; record the attempt.

    An unknown username costs the same hashing time as a wrong password.
    """
    user = find_user_by_username(username) if username else None
    if user is None:
        burn_verification_time(password)
        log_login_failed(username, "unknown user")
        raise LoginFailed(GENERIC_FAILURE)
    if not verify_password(user.password_hash, password):
        log_login_failed(username, "wrong password", user)
        raise LoginFailed(GENERIC_FAILURE)
    if not user.can_log_in:
        reason = "account deactivated" if not user.is_active else f"account {user.status}"
        log_login_failed(username, reason, user)
        raise LoginFailed("This account cannot log in. Ask an administrator.")
    user.last_login_at = utcnow()
    log_login(user)
    db.session.flush()
    return user


def end_session(user: User) -> None:
    """Log out: every session of this user issued so far stops working."""
    user.session_version += 1
    log_logout(user, transactional=True)
    db.session.flush()


def change_own_password(user: User, current_password: str, new_password: str) -> None:
    """Change the user's own password after checking the current one; other sessions end."""
    if not verify_password(user.password_hash, current_password):
        log_audit(user.id, ActionType.PASSWORD_CHANGE, ResourceType.USER, user.id,
                  f"{user.username} failed to change their password: wrong current password",
                  status="FAILURE", is_sensitive=True)
        raise ServiceError("current_password", "The current password is wrong.")
    try:
        check_password_strength(new_password, user.username)
    except ServiceError as exc:
        log_audit(user.id, ActionType.PASSWORD_CHANGE, ResourceType.USER, user.id,
                  f"{user.username} failed to change their password: {exc.message}",
                  {"field": "new_password", "reason": exc.message}, status="FAILURE", is_sensitive=True)
        raise
    user.password_hash = hash_password(new_password)
    user.session_version += 1
    log_audit(user.id, ActionType.PASSWORD_CHANGE, ResourceType.USER, user.id,
              f"{user.username} changed their password", is_sensitive=True, transactional=True,
              metadata={"self_service": True})
    db.session.flush()
