"""The integrity page: the last verification of the hash chain, and a button to run one; the signed digests (the
newest ones, whether a sealer is signing) and the public key that checks them; the retention periods and the legal
holds (their forms post to ``holds.py``); the erasure requests (their buttons post to ``erasures.py``)."""

from __future__ import annotations

from datetime import datetime

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from ...access import admin_required
from ..integrity import erasure, retention
from ..integrity import holds as hold_service
from ..integrity.checkpoints import last_checkpoint
from ..integrity.digests import digest_status, list_digests, published_keys
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
                           retention=retention.periods(current_app.config), erasures=erasure.list_requests(50))


def _newest_digests() -> list[dict]:
    return [{**d, "created": datetime.fromisoformat(d["created_at"])} for d in list_digests(0, 10)["items"]]


def _public_keys() -> dict:
    try:
        return {"public_keys": published_keys(), "key_error": None}
    except KeyFileError as exc:
        return {"public_keys": None, "key_error": str(exc)}


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
