"""The Integrity page's erasure buttons: approve (and carry out) or reject a request (the list is on the page,
``integrity.py``; the requests are made through the API or the command line)."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from ...access import admin_required
from ...extensions import db
from ..integrity import erasure
from .views import bp


@bp.post("/integrity/erasure-requests/<int:request_id>/approve")
@admin_required
def approve_erasure(request_id: int):
    """Approve an erasure request and carry it out; the service refuses the requester's own approval."""
    return _decide(request_id, erasure.approve_erasure, lambda done: (
        f"Erasure request {done.id} carried out: {done.erased_count:,} events erased"
        + (f"; {done.held_count:,} held events were left as they are." if done.held_count else ".")))


@bp.post("/integrity/erasure-requests/<int:request_id>/reject")
@admin_required
def reject_erasure(request_id: int):
    """Reject an erasure request: nothing is erased."""
    return _decide(request_id, erasure.reject_erasure, lambda done: f"Erasure request {done.id} rejected.")


def _decide(request_id: int, operation, said):
    if not FlaskForm().validate_on_submit():
        flash("The form's security token is missing or wrong. Reload the page and try again.", "danger")
    else:
        try:
            done = operation(request_id, erasure.Admin(current_user.id, current_user.username))
        except (erasure.ErasureError, erasure.NotFound) as exc:
            db.session.rollback()
            flash(getattr(exc, "message", str(exc)), "danger")
        else:
            db.session.commit()
            flash(said(done), "success")
    return redirect(url_for("audit.integrity", _anchor="erasure-requests")), 303
