"""The integrity page: the last verification of the hash chain, and a button to run one."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from ..auth.decorators import admin_required
from ..extensions import db
from . import bp
from .chain import last_checkpoint, record_verification, seal, verify
from .chain_models import AuditChainLink
from .enums import ActionType
from .models import AuditLog


def _last_verification() -> AuditLog | None:
    return db.session.scalar(select(AuditLog).where(AuditLog.action_type == ActionType.AUDIT_VERIFY.value)
                             .order_by(AuditLog.timestamp.desc(), AuditLog.id.desc()).limit(1))


@bp.get("/integrity")
@admin_required
def integrity():
    head = db.session.scalar(select(func.max(AuditChainLink.seq)))
    unsealed = db.session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.id > (select(func.coalesce(func.max(AuditChainLink.audit_log_id), 0)).scalar_subquery())))
    return render_template("audit/integrity.html", last=_last_verification(), head=head, unsealed=unsealed,
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
