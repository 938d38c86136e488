"""Users, roles, and the API tokens that scripts use to act as a user (stored as SHA-256 hashes, revocable,
attributable to their user)."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import UTCDateTime, utcnow


class RoleName(enum.StrEnum):
    """The roles a user can hold."""

    ADMIN = "admin"  #: manages users and reads the audit log
    USER = "user"  #: uses the application; cannot see the audit log


class UserStatus(enum.StrEnum):
    """Account status, independent of activation (both are audited)."""

    ACTIVE = "active"
    PENDING = "pending"
    SUSPENDED = "suspended"


USERNAME_MAX = 64
EMAIL_MAX = 254
FULL_NAME_MAX = 120
TIMEZONE_MAX = 64


class Role(db.Model):
    """A named role; ``admin`` and ``user`` are created by the initial migration."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")

    def __repr__(self) -> str:
        return f"<Role {self.name}>"


class User(UserMixin, db.Model):
    """A person who can log in. Passwords are stored only as argon2id hashes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)
    full_name: Mapped[str] = mapped_column(String(FULL_NAME_MAX), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id"), index=True)
    role: Mapped[Role] = relationship(lazy="joined")
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE.value)
    #: The IANA time zone (e.g. ``Europe/Paris``) in which pages show this user times; the API and exports stay UTC.
    timezone: Mapped[str] = mapped_column(String(TIMEZONE_MAX), default="UTC", server_default="UTC")
    #: Deactivated accounts are kept (their audit trail stays readable) but cannot log in.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Bumped at logout and password change: every session issued before becomes invalid.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def is_admin(self) -> bool:
        return self.role is not None and self.role.name == RoleName.ADMIN.value

    @property
    def role_name(self) -> str:
        return self.role.name if self.role is not None else ""

    @property
    def can_log_in(self) -> bool:
        return self.is_active and self.status == UserStatus.ACTIVE.value

    def get_id(self) -> str:
        """Flask-Login's session key: the id plus the session version, so old sessions stop working."""
        return f"{self.id}.{self.session_version}"

    def __repr__(self) -> str:
        return f"<User {self.username}>"


TOKEN_NAME_MAX = 100


class ApiToken(db.Model):
    """A bearer token. The secret is shown once at creation; only its hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    user: Mapped[User] = relationship(lazy="joined")
    name: Mapped[str] = mapped_column(String(TOKEN_NAME_MAX), default="")
    #: The first characters of the token, so a user can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of the whole token (tokens are 256-bit random, so a fast hash is enough).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
