"""Saved views: an admin sees their own views and the shared ones; only the owner changes or removes a view
(another admin's personal view does not exist for anyone else: 404). The caller commits."""

from __future__ import annotations

from sqlalchemy import func, or_, select, update

from ...extensions import db
from .models import SavedView, ViewPage


class ViewError(ValueError):
    """A rule was broken; ``field`` names the input at fault; ``code`` 403 when only the owner may do it."""

    def __init__(self, field: str, message: str, code: int = 422):
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


class NotFound(LookupError):
    pass


def _visible(user_id: int):
    return or_(SavedView.owner_id == user_id, SavedView.shared.is_(True))


def list_views(user_id: int, page: str | None = None) -> list[SavedView]:
    """The user's views, then the shared ones of others, by name."""
    query = select(SavedView).where(_visible(user_id))
    if page:
        query = query.where(SavedView.page == page)
    return list(db.session.scalars(query.order_by((SavedView.owner_id != user_id), func.lower(SavedView.name),
                                                  SavedView.id)))


def get_view(user_id: int, view_id: int) -> SavedView:
    view = db.session.scalar(select(SavedView).where(SavedView.id == view_id, _visible(user_id))) \
        if 0 < view_id < 2**31 else None
    if view is None:
        raise NotFound(f"There is no saved view with id {view_id}.")
    return view


def default_view(user_id: int, page: str = ViewPage.VIEWER.value) -> SavedView | None:
    return db.session.scalar(select(SavedView).where(SavedView.owner_id == user_id, SavedView.page == page,
                                                     SavedView.is_default.is_(True)))


def _unique(user_id: int, name: str, page: str, exclude_id: int | None = None) -> None:
    query = select(SavedView.id).where(SavedView.owner_id == user_id, SavedView.page == page,
                                       func.lower(SavedView.name) == name.lower())
    if exclude_id is not None:
        query = query.where(SavedView.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise ViewError("name", f"You already have a view called {name!r} on this page.")


def _only_default(view: SavedView) -> None:
    """A new default replaces the owner's previous one on that page."""
    db.session.execute(update(SavedView).where(SavedView.owner_id == view.owner_id, SavedView.page == view.page,
                                               SavedView.id != view.id).values(is_default=False)
                       .execution_options(synchronize_session="fetch"))


def create_view(user_id: int, data: dict) -> SavedView:
    _unique(user_id, data["name"], data["page"])
    view = SavedView(owner_id=user_id, name=data["name"].strip(), q=data.get("q"), filters=data.get("filters") or {},
                     page=data["page"], shared=data.get("shared", False), is_default=data.get("is_default", False))
    db.session.add(view)
    db.session.flush()
    if view.is_default:
        _only_default(view)
    return view


def _owned(user_id: int, view: SavedView) -> None:
    if view.owner_id != user_id:
        raise ViewError("id", "A shared view is changed or removed by its owner only; save a copy of your own.", 403)


def update_view(user_id: int, view: SavedView, changes: dict) -> SavedView:
    _owned(user_id, view)
    if "name" in changes or "page" in changes:
        _unique(user_id, changes.get("name", view.name), changes.get("page", view.page), exclude_id=view.id)
    for field, value in changes.items():
        setattr(view, field, value.strip() if field == "name" else value)
    db.session.flush()
    if view.is_default:
        _only_default(view)
    return view


def delete_view(user_id: int, view: SavedView) -> None:
    _owned(user_id, view)
    db.session.delete(view)
    db.session.flush()
