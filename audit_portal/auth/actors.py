"""The directory of users that auth lends the audit package (``audit.use_actor_directory``): how audit code
finds a user's name without importing the user model."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from ..extensions import db
from ..users.models import Role, RoleName, User, UserStatus


class UserDirectory:
    def names(self, user_ids: Iterable[int]) -> dict[int, str]:
        """The usernames of those of ``user_ids`` that exist. One id is looked up through the session's identity
        map (no query when the user is loaded already), without flushing the caller's pending changes."""
        ids = [i for i in user_ids if isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**31]
        with db.session.no_autoflush:
            if len(ids) == 1:
                user = db.session.get(User, ids[0])
                return {user.id: user.username} if user is not None else {}
            return dict(db.session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}

    def some(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` users (the first created), as (id, username)."""
        return [tuple(row) for row in db.session.execute(select(User.id, User.username).order_by(User.id).limit(limit))]

    def admin_emails(self) -> list[str]:
        """The addresses of the admins who can log in (active, status active), in the order they were created."""
        query = (select(User.email).join(Role, Role.id == User.role_id)
                 .where(Role.name == RoleName.ADMIN.value, User.is_active.is_(True),
                        User.status == UserStatus.ACTIVE.value, User.email != "")
                 .order_by(User.id))
        return list(db.session.scalars(query))

    def find(self, username: str) -> tuple[int, str] | None:
        """The user called ``username`` (exactly, as at login) as (id, username), or None."""
        row = db.session.execute(select(User.id, User.username).where(User.username == username)).first()
        return tuple(row) if row is not None else None

    def is_admin(self, user_id: int) -> bool:
        """Whether ``user_id`` is an admin who can log in."""
        user = db.session.get(User, user_id)
        return user is not None and user.is_admin and user.can_log_in
