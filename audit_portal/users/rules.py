"""The rules every entry point to user accounts shares (pages, API, CLI): what a valid username, email, full
name, password, status and time zone are, and the errors that name the field at fault."""

from __future__ import annotations

import re

from flask import current_app

from ..timeutil import canonical_timezone
from .models import EMAIL_MAX, FULL_NAME_MAX, USERNAME_MAX, UserStatus

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{2,63}$")
#: No control characters (PostgreSQL cannot even store NUL in a string) and no lone UTF-16 surrogates
#: (a JSON body can carry "\ud800"; no database can store it).
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f\ud800-\udfff]+@[^@\s\x00-\x1f\x7f\ud800-\udfff]+"
                      r"\.[^@\s\x00-\x1f\x7f\ud800-\udfff]+$")
PASSWORD_MAX = 256


class ServiceError(ValueError):
    """A rule was broken. ``field`` names the input at fault; the message is safe to show."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class NotFound(LookupError):
    pass


def check_username(username: str) -> str:
    username = (username or "").strip()
    if not USERNAME_RE.match(username):
        raise ServiceError(
            "username",
            f"Username must be 3 to {USERNAME_MAX} characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
        )
    return username


def check_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > EMAIL_MAX or not EMAIL_RE.match(email):
        raise ServiceError("email", "Enter a valid email address.")
    return email


def check_full_name(full_name: str | None) -> str:
    full_name = (full_name or "").strip()
    if len(full_name) > FULL_NAME_MAX or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in full_name):
        raise ServiceError("full_name", f"Full name must be at most {FULL_NAME_MAX} printable characters.")
    return full_name


def check_timezone(name: str | None) -> str:
    """An IANA time zone name (any case) or UTC, returned in its IANA spelling."""
    canonical = canonical_timezone(name or "")
    if canonical is None:
        raise ServiceError("timezone", f"Unknown time zone {str(name or '')[:64]!r}; choose UTC or an IANA name "
                                       "such as Europe/Paris.")
    return canonical


def check_password_strength(password: str, username: str = "") -> None:
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if not password or len(password) < minimum:
        raise ServiceError("password", f"Password must be at least {minimum} characters long.")
    if len(password) > PASSWORD_MAX:
        raise ServiceError("password", f"Password must be at most {PASSWORD_MAX} characters long.")
    if username and username.lower() in password.lower():
        raise ServiceError("password", "Password must not contain the username.")
    if len(set(password)) < 4:
        raise ServiceError("password", "Password is too simple: use more different characters.")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in password):  # only a JSON "\udXXX" escape can send one
        raise ServiceError("password", "Password must be valid Unicode text (it has a lone surrogate).")


def parse_status(status: str) -> UserStatus:
    try:
        return UserStatus(str(status).strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in UserStatus)
        raise ServiceError("status", f"Unknown status {status!r}; allowed: {allowed}.") from None
