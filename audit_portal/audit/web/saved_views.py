"""The saved views page (/admin/saved-views/, admins only): your views and the shared ones, opened, saved from the
viewer's or the dashboard's current query, removed. Input goes through the API's schema and the same service."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from marshmallow import ValidationError

from ...access import admin_required
from ...extensions import db
from ..read.query import AuditFilters
from ..saved import service
from ..saved.schemas import SavedViewCreateSchema

bp = Blueprint("saved_views", __name__, url_prefix="/admin/saved-views")
_FILTERS = frozenset(AuditFilters.names()) - {"q"}
_BAD_TOKEN = "The form's security token is missing or wrong. Reload the page and try again."


def _render(errors: dict, status: int = 200):
    return render_template("saved_views/list.html", views=service.list_views(current_user.id), errors=errors,
                           csrf_form=FlaskForm()), status


@bp.get("/")
@admin_required
def list_views():
    return _render({})[0]


@bp.post("/")
@admin_required
def save_view():
    """Save the query and filters the viewer or the dashboard posted (their current ones)."""
    if not FlaskForm().validate_on_submit():
        return _render({"form": [_BAD_TOKEN]}, 400)
    form = request.form
    data = {"name": form.get("name", ""), "page": form.get("page", "viewer"), "shared": form.get("shared") == "on",
            "is_default": form.get("is_default") == "on",
            "filters": {k[2:]: v for k, v in form.items() if k.startswith("f_") and k[2:] in _FILTERS and v.strip()}}
    if form.get("q", "").strip():
        data["q"] = form["q"]
    try:
        view = service.create_view(current_user.id, SavedViewCreateSchema().load(data))
    except ValidationError as exc:
        return _render(exc.messages, 422)
    except service.ViewError as exc:
        db.session.rollback()
        return _render({exc.field: [exc.message]}, exc.code)
    db.session.commit()
    flash(f"View {view.name!r} saved.", "success")
    return redirect(view.url)


@bp.post("/<int:view_id>/remove")
@admin_required
def remove_view(view_id: int):
    if not FlaskForm().validate_on_submit():
        abort(400, description=_BAD_TOKEN)
    try:
        view = service.get_view(current_user.id, view_id)
        name = view.name
        service.delete_view(current_user.id, view)
    except service.NotFound as exc:
        abort(404, description=str(exc))
    except service.ViewError as exc:
        db.session.rollback()
        return _render({exc.field: [exc.message]}, exc.code)
    db.session.commit()
    flash(f"View {name!r} removed.", "success")
    return redirect(url_for("saved_views.list_views"))
