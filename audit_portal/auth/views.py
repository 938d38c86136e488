"""Login, logout and password change pages."""

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..audit import remember_actor
from ..extensions import db
from ..users.rules import ServiceError
from .forms import LoginForm, PasswordChangeForm
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
