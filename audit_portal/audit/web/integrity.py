"""The integrity page: the last verification of the hash chain, and a button to run one; the signed digests (the
newest ones, whether a sealer is signing) and the public key that checks them; the legal holds, a form to place one
and a button to release each; the erasure requests, with buttons to approve or reject them."""

from __future__ import annotations

from datetime import datetime

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from marshmallow import ValidationError

from ...access import admin_required
from ...extensions import db
from ..integrity import erasure, retention
from ..integrity import holds as hold_service
from ..integrity.checkpoints import last_checkpoint
from ..integrity.digests import digest_status, list_digests, published_keys
from ..integrity.schemas import HoldCreateSchema
from ..integrity.seal import chain_head, seal
from ..integrity.signing import KeyFileError
from ..integrity.verify import record_verification, verify
from ..read.query import AuditFilters, AuditLogRepository
from ..record.enums import ActionType
from .views import bp


@bp.get("/integrity")
@admin_required
def integrity():
    repo = AuditLogRepository()
    head, top_sealed_id = chain_head()
    last = repo.newest(AuditFilters(action_type=ActionType.AUDIT_VERIFY.value))
    return render_template("audit/integrity.html", last=last, head=head, unsealed=repo.count_newer_than(top_sealed_id),
                           checkpoint=last_checkpoint(), form=FlaskForm(), digests=_newest_digests(),
                           digest_state=digest_status(), **_public_keys(), holds=hold_service.list_holds(),
                           retention=retention.periods(current_app.config),
                           erasures=erasure.list_requests(50))


def _newest_digests() -> list[dict]:
    return [{**d, "created": datetime.fromisoformat(d["created_at"])} for d in list_digests(0, 10)["items"]]


def _public_keys() -> dict:
    try:
        return {"public_keys": published_keys(), "key_error": None}
    except KeyFileError as exc:
        return {"public_keys": None, "key_error": str(exc)}


def _token_refused():
    """A redirect back to the page when the form's CSRF token is missing or wrong; None when it is right."""
    if FlaskForm().validate_on_submit():
        return None
    flash("The form's security token is missing or wrong. Reload the page and try again.", "danger")
    return redirect(url_for("audit.integrity")), 303


@bp.post("/integrity/verify")
@admin_required
def run_verification():
    if refused := _token_refused():
        return refused
    seal()
    result = verify()
    record_verification(result, current_user)
    if result.ok:
        flash(f"The audit chain is intact ({result.checked:,} events checked).", "success")
    else:
        flash(f"Verification found {result.problem_count:,} problem(s): {result.problems[0]}", "danger")
    return redirect(url_for("audit.integrity"))


@bp.post("/integrity/holds")
@admin_required
def add_hold():
    if refused := _token_refused():
        return refused
    try:
        data = HoldCreateSchema().load({name: request.form.get(name, "") for name in ("from", "to", "reason")})
        hold = hold_service.add_hold(current_user, data["starts_at"], data["ends_at"], data["reason"])
    except ValidationError as exc:
        flash("; ".join(f"{field}: {' '.join(problems)}" for field, problems in exc.messages.items()), "danger")
        return redirect(url_for("audit.integrity", _anchor="holds")), 303
    except hold_service.HoldError as exc:
        db.session.rollback()
        flash(f"{exc.field}: {exc.message}", "danger")
        return redirect(url_for("audit.integrity", _anchor="holds")), 303
    db.session.commit()
    flash(f"Legal hold {hold.id} placed.", "success")
    return redirect(url_for("audit.integrity", _anchor="holds"))


@bp.post("/integrity/holds/<int:hold_id>/release")
@admin_required
def release_hold(hold_id: int):
    if refused := _token_refused():
        return refused
    try:
        hold_service.release_hold(current_user, hold_id)
    except hold_service.HoldError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return redirect(url_for("audit.integrity", _anchor="holds")), 303
    db.session.commit()
    flash(f"Legal hold {hold_id} released.", "success")
    return redirect(url_for("audit.integrity", _anchor="holds"))


@bp.post("/integrity/erasure-requests/<int:request_id>/approve")
@admin_required
def approve_erasure(request_id: int):
    """Approve an erasure request and carry it out; the service refuses the requester's own approval."""
    return _decide_erasure(request_id, erasure.approve_erasure, lambda done: (
        f"Erasure request {done.id} carried out: {done.erased_count:,} events erased"
        + (f"; {done.held_count:,} held events were left as they are." if done.held_count else ".")))


@bp.post("/integrity/erasure-requests/<int:request_id>/reject")
@admin_required
def reject_erasure(request_id: int):
    """Reject an erasure request: nothing is erased."""
    return _decide_erasure(request_id, erasure.reject_erasure, lambda done: f"Erasure request {done.id} rejected.")


def _decide_erasure(request_id: int, operation, said):
    if refused := _token_refused():
        return refused
    try:
        done = operation(request_id, erasure.Admin(current_user.id, current_user.username))
    except (erasure.ErasureError, erasure.NotFound) as exc:
        db.session.rollback()
        flash(getattr(exc, "message", str(exc)), "danger")
    else:
        db.session.commit()
        flash(said(done), "success")
    return redirect(url_for("audit.integrity", _anchor="erasure-requests")), 303
