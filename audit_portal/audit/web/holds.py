"""The Integrity page's legal-hold forms: place a hold, release one (the list is on the page, ``integrity.py``)."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from marshmallow import ValidationError

from ...access import admin_required
from ...extensions import db
from ..integrity import holds as hold_service
from ..integrity.schemas import HoldCreateSchema
from .views import bp


def _back(message: str | None = None, category: str = "danger", code: int = 303):
    if message:
        flash(message, category)
    return redirect(url_for("audit.integrity", _anchor="holds")), code


def _token_refused():
    """The redirect back to the page when the form's CSRF token is missing or wrong; None when it is right."""
    if FlaskForm().validate_on_submit():
        return None
    return _back("The form's security token is missing or wrong. Reload the page and try again.")


@bp.post("/integrity/holds")
@admin_required
def add_hold():
    if refused := _token_refused():
        return refused
    try:
        data = HoldCreateSchema().load({name: request.form.get(name, "") for name in ("from", "to", "reason")})
        hold = hold_service.add_hold(current_user, data["starts_at"], data["ends_at"], data["reason"])
    except ValidationError as exc:
        return _back("; ".join(f"{field}: {' '.join(problems)}" for field, problems in exc.messages.items()))
    except hold_service.HoldError as exc:
        db.session.rollback()
        return _back(f"{exc.field}: {exc.message}")
    db.session.commit()
    return _back(f"Legal hold {hold.id} placed.", "success", 302)


@bp.post("/integrity/holds/<int:hold_id>/release")
@admin_required
def release_hold(hold_id: int):
    if refused := _token_refused():
        return refused
    try:
        hold_service.release_hold(current_user, hold_id)
    except hold_service.HoldError as exc:
        db.session.rollback()
        return _back(exc.message)
    db.session.commit()
    return _back(f"Legal hold {hold_id} released.", "success", 302)
