"""Login throttling: failed attempts are counted per client IP and per username; over the limit the
answer is an immediate 429 with Retry-After (never a sleep), and the throttled attempt is audited."""

from __future__ import annotations

from flask import current_app, request

from ..audit import ActionType, ResourceType, Status, client_ip, log_audit, single_line
from ..extensions import limiter


def _ip_key() -> str:
    return f"login-ip:{client_ip() or 'unknown'}"


def _username_key() -> str:
    # Control characters escaped: Flask-Limiter writes the key into the application log when the limit is
    # hit, and a username with CR/LF must not forge a second log line there.
    return "login-user:" + single_line((request.form.get("username") or "").strip().lower()[:64], 256)


def _failed(response) -> bool:
    """Only failed attempts count, so a user who types their password right is never slowed down."""
    return response.status_code in (400, 401)


def _record_throttled(request_limit) -> None:
    attempted = (request.form.get("username") or "").strip()[:64]
    log_audit(None, ActionType.LOGIN_THROTTLED, ResourceType.SESSION, None,
              f"Login attempt for '{attempted}' refused: too many failed attempts ({request_limit.limit})",
              {"attempted_username": attempted, "limit": str(request_limit.limit), "key": request_limit.key.split(":")[0]
               if isinstance(request_limit.key, str) else None},
              status=Status.FAILURE, is_sensitive=True)


def login_limits(view):
    """Apply the per-IP and per-username limits (settings LOGIN_LIMIT_PER_IP, LOGIN_LIMIT_PER_USERNAME)."""
    view = limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_USERNAME"], key_func=_username_key,
                         methods=["POST"], deduct_when=_failed, on_breach=_record_throttled,
                         scope="login-username")(view)
    view = limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"], key_func=_ip_key, methods=["POST"],
                         deduct_when=_failed, on_breach=_record_throttled, scope="login-ip")(view)
    return view
