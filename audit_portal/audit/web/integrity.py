"""The integrity page: the last verification of the hash chain, and a button to run one; the erasure requests, with
buttons to approve or reject them (``integrity/erasure.py``)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from ...access import admin_required
from ...extensions import db
from ..integrity import erasure
from ..integrity.checkpoints import last_checkpoint
from ..integrity.seal import chain_head, seal
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
                           checkpoint=last_checkpoint(), form=FlaskForm(), erasures=erasure.list_requests(50))


@bp.post("/integrity/verify")
@admin_required
def run_verification():
    form = FlaskForm()
    if not form.validate_on_submit():
        flash("The form's security token is missing or wrong. Reload the page and try again.", "danger")
        return redirect(url_for("audit.integrity")), 303
    seal()
    result = verify()
    record_verification(result, current_user)
    if result.ok:
        flash(f"The audit chain is intact ({result.checked:,} events checked).", "success")
    else:
        flash(f"Verification found {result.problem_count:,} problem(s): {result.problems[0]}", "danger")
    return redirect(url_for("audit.integrity"))


@bp.post("/integrity/erasure-requests/<int:request_id>/<any(approve, reject):decision>")
@admin_required
def decide_erasure(request_id: int, decision: str):
    """Approve (and carry out) or reject an erasure request; the service refuses the requester's own approval."""
    if not FlaskForm().validate_on_submit():
        flash("The form's security token is missing or wrong. Reload the page and try again.", "danger")
        return redirect(url_for("audit.integrity")), 303
    me = erasure.Admin(current_user.id, current_user.username)
    operation = erasure.approve_erasure if decision == "approve" else erasure.reject_erasure
    try:
        done = operation(request_id, me)
    except (erasure.ErasureError, erasure.NotFound) as exc:
        db.session.rollback()
        flash(getattr(exc, "message", str(exc)), "danger")
        return redirect(url_for("audit.integrity")), 303
    db.session.commit()
    if decision == "approve":
        held = f"; {done.held_count:,} held events were left as they are" if done.held_count else ""
        flash(f"Erasure request {done.id} carried out: {done.erased_count:,} events erased{held}.", "success")
    else:
        flash(f"Erasure request {done.id} rejected.", "success")
    return redirect(url_for("audit.integrity")), 303
