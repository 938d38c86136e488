"""Who an event names. The audit package never imports the app's user model: the app lends it a directory
of users (``audit.use_actor_directory``; the auth package provides it) through which the audit code finds a
user's name, tells a deleted user from a changed one, picks users for demo data and finds whom to email alerts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from flask import current_app, has_app_context

EXTENSION_KEY = "audit_actors"


class ActorDirectory(Protocol):
    def names(self, user_ids: Iterable[int]) -> dict[int, str]:
        """The current username of each of ``user_ids`` that exists (the others are left out)."""

    def some(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` users as (id, username)."""

    def admin_emails(self) -> list[str]:
        """The email addresses of the active admins (alert notifications go there by default)."""

    def find(self, username: str) -> tuple[int, str] | None:
        """The user called ``username`` as (id, username), or None (a command's ``--by`` names its actor so)."""

    def is_admin(self, user_id: int) -> bool:
        """Whether ``user_id`` is an admin who can log in (an erasure's requester and approver must be)."""


class NoDirectory:
    """What the audit code sees when the app lent it none: nobody is known."""

    def names(self, user_ids: Iterable[int]) -> dict[int, str]:
        return {}

    def some(self, limit: int) -> list[tuple[int, str]]:
        return []

    def admin_emails(self) -> list[str]:
        return []

    def find(self, username: str) -> tuple[int, str] | None:
        return None

    def is_admin(self, user_id: int) -> bool:
        return False


def use_actor_directory(app, directory: ActorDirectory) -> None:
    """Lend ``directory`` to the audit code of ``app``."""
    app.extensions[EXTENSION_KEY] = directory


def directory() -> ActorDirectory:
    """The current app's directory (one that knows nobody outside an app, or before the app lent one)."""
    if not has_app_context():
        return NoDirectory()
    return current_app.extensions.get(EXTENSION_KEY) or NoDirectory()


def username_of(user_id: object) -> str | None:
    """The current name of user ``user_id``, or None (unknown, deleted, or not a user id at all)."""
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        return None
    return directory().names([user_id]).get(user_id)
