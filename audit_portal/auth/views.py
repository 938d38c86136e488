"""Login, logout, password change and preferences pages."""

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..audit import ActionType, remember_actor
from ..extensions import db
from ..users.rules import ServiceError
from ..users.services import run_operation, update_user
from .forms import LoginForm, PasswordChangeForm, PreferencesForm
from .services import LoginFailed, authenticate, change_own_password, end_session
from .throttle import login_limits

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _safe_next(target: str | None) -> str | None:
    """Only same-site relative paths: never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@login_limits
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = authenticate(form.username.data, form.password.data)
        except LoginFailed as exc:
            db.session.commit()
            flash(str(exc), "danger")
            status = 401
        else:
            session.clear()  # a fresh session (and CSRF token) at login: no fixation
            login_user(user)
            remember_actor(user)
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")) or url_for("main.index"))
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    end_session(current_user._get_current_object())
    db.session.commit()
    logout_user()
    session.clear()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    form = PasswordChangeForm()
    status = 200
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            change_own_password(user, form.current_password.data, form.new_password.data)
        except ServiceError as exc:
            db.session.rollback()
            getattr(form, {"password": "new_password"}.get(exc.field, exc.field)).errors.append(exc.message)
            status = 400
        else:
            db.session.commit()
            login_user(user)  # keep this session; every other session of the user has ended
            flash("Your password has been changed. Other sessions have been logged out.", "success")
            return redirect(url_for("main.index"))
    elif request.method == "POST":
        status = 400
    return render_template("auth/password.html", form=form), status


@bp.route("/preferences", methods=["GET", "POST"])
@login_required
def preferences():
    """The user's own time zone, changed through the same audited operation as an admin's edit."""
    user = current_user._get_current_object()
    form = PreferencesForm(obj=user)
    status = 200
    if form.validate_on_submit():
        try:
            run_operation(user, ActionType.UPDATE, user.id, lambda: update_user(user, user, timezone=form.timezone.data))
        except ServiceError as exc:
            form.timezone.errors = [*form.timezone.errors, exc.message]
            status = 400
        else:
            flash(f"Your preferences have been saved. Pages now show times in {user.timezone}.", "success")
            return redirect(url_for("auth.preferences"))
    elif request.method == "POST":
        status = 400
    return render_template("auth/preferences.html", form=form), status
