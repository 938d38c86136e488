"""API tokens on a user's page: create (the secret is shown once, never stored in the session) and revoke."""

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from ..access import admin_required
from ..extensions import db
from . import tokens
from .forms import TokenCreateForm
from .rules import NotFound, ServiceError
from .views import bp, render_detail, user_or_404


@bp.post("/<int:user_id>/tokens")
@admin_required
def create_token(user_id: int):
    user = user_or_404(user_id)
    form = TokenCreateForm()
    if not form.validate_on_submit():
        return render_detail(user, token_form=form), 400
    try:
        token, raw = tokens.create_token(current_user, user, form.name.data)
    except ServiceError as exc:
        db.session.rollback()
        form.name.errors = [exc.message]
        return render_detail(user, token_form=form), 400
    db.session.commit()
    return render_template("users/token_created.html", user=user, token=token, raw=raw)


@bp.post("/<int:user_id>/tokens/<int:token_id>/revoke")
@admin_required
def revoke_token(user_id: int, token_id: int):
    user = user_or_404(user_id)
    try:
        token = tokens.get_token(token_id)
    except NotFound:
        abort(404, description=f"There is no API token with id {token_id}.")
    if token.user_id != user.id:
        abort(404, description=f"User {user.username} has no API token with id {token_id}.")
    if not FlaskForm().validate_on_submit():
        abort(400, description="The form's security token is missing or wrong. Reload the page and try again.")
    tokens.revoke_token(current_user, token)
    db.session.commit()
    flash(f"Token {token.prefix}… revoked.", "success")
    return redirect(url_for("users.show_user", user_id=user.id))
