"""The integrity page: the last verification of the hash chain, and a button to run one."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from ...access import admin_required
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
                           checkpoint=last_checkpoint(), form=FlaskForm())


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
