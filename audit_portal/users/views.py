"""User management pages. Each view parses the form, calls one service, commits, and renders."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import admin_required
from ..audit import ActionType, AuditLogRepository
from . import services
from .forms import ConfirmForm, ResetPasswordForm, StatusForm, TokenCreateForm, UserCreateForm, UserEditForm
from .rules import NotFound, ServiceError
from .tokens import tokens_for

bp = Blueprint("users", __name__, url_prefix="/admin/users")

PER_PAGE_CHOICES = (10, 25, 50, 100)


def user_or_404(user_id: int):
    try:
        return services.get_user(user_id)
    except NotFound:
        abort(404, description=f"There is no user with id {user_id}.")


def _attach(form, exc: ServiceError) -> None:
    """Show a service error next to the field it is about (or at the top of the form)."""
    field = getattr(form, exc.field, None)
    if field is not None and hasattr(field, "errors") and exc.field != "submit":
        field.errors = list(field.errors) + [exc.message]
    else:
        flash(exc.message, "danger")


def _commit_or_report(form, action, action_type: ActionType, target_id: int | None = None):
    """Run ``action`` and commit; on a broken rule, record the refusal and attach the error to the form."""
    try:
        return services.run_operation(current_user, action_type, target_id, action), True
    except ServiceError as exc:
        _attach(form, exc)
        return None, False


@bp.get("/")
@admin_required
def list_users():
    search = request.args.get("q", "").strip()[:100]
    page = request.args.get("page", 1, type=int) or 1
    per_page = request.args.get("per_page", 25, type=int)
    if per_page not in PER_PAGE_CHOICES:
        per_page = 25
    pagination = services.list_users(search, max(page, 1), per_page)
    return render_template("users/list.html", pagination=pagination, search=search, per_page=per_page,
                           per_page_choices=PER_PAGE_CHOICES, confirm_form=ConfirmForm())


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def create_user():
    form = UserCreateForm()
    if form.validate_on_submit():
        user, ok = _commit_or_report(form, lambda: services.create_user(
            current_user, username=form.username.data, email=form.email.data, password=form.password.data,
            full_name=form.full_name.data, role=form.role.data, status=form.status.data,
            is_active=form.is_active.data, timezone=form.timezone.data), ActionType.CREATE)
        if ok:
            flash(f"User {user.username} created.", "success")
            return redirect(url_for("users.show_user", user_id=user.id))
    status = 400 if request.method == "POST" else 200
    return render_template("users/form.html", form=form, user=None), status


def render_detail(user, **forms):
    """A user's page: profile, forms for its actions, API tokens and recent events."""
    forms.setdefault("status_form", StatusForm(status=user.status))
    forms.setdefault("password_form", ResetPasswordForm())
    forms.setdefault("token_form", TokenCreateForm())
    recent = AuditLogRepository().recent_for_user(user.id, limit=10)
    return render_template("users/detail.html", user=user, recent_events=recent, confirm_form=ConfirmForm(),
                           api_tokens=tokens_for(user), **forms)


@bp.get("/<int:user_id>")
@admin_required
def show_user(user_id: int):
    return render_detail(user_or_404(user_id))


@bp.route("/<int:user_id>/edit", methods=["GET", "POST"])
@admin_required
def edit_user(user_id: int):
    user = user_or_404(user_id)
    form = UserEditForm(obj=user, role=user.role.name)
    if form.validate_on_submit():
        _, ok = _commit_or_report(form, lambda: services.update_user(
            current_user, user, username=form.username.data, email=form.email.data,
            full_name=form.full_name.data, role=form.role.data, timezone=form.timezone.data), ActionType.UPDATE, user.id)
        if ok:
            flash(f"User {user.username} saved.", "success")
            return redirect(url_for("users.show_user", user_id=user.id))
    status = 400 if request.method == "POST" else 200
    return render_template("users/form.html", form=form, user=user), status


def _one_button_action(user_id: int, action, done: str, action_type: ActionType):
    user = user_or_404(user_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400, description="The form's security token is missing or wrong. Reload the page and try again.")
    _, ok = _commit_or_report(form, lambda: action(user), action_type, user.id)
    if not ok:
        return render_detail(user), 400
    flash(done.format(username=user.username), "success")
    return redirect(url_for("users.show_user", user_id=user.id))


@bp.post("/<int:user_id>/activate")
@admin_required
def activate_user(user_id: int):
    return _one_button_action(user_id, lambda u: services.set_active(current_user, u, True), "User {username} activated.",
                              ActionType.ACTIVATE)


@bp.post("/<int:user_id>/deactivate")
@admin_required
def deactivate_user(user_id: int):
    return _one_button_action(user_id, lambda u: services.set_active(current_user, u, False),
                              "User {username} deactivated.", ActionType.DEACTIVATE)


@bp.post("/<int:user_id>/status")
@admin_required
def change_status(user_id: int):
    user = user_or_404(user_id)
    form = StatusForm()
    if form.validate_on_submit():
        _, ok = _commit_or_report(form, lambda: services.change_status(current_user, user, form.status.data),
                                  ActionType.STATUS_CHANGE, user.id)
        if ok:
            flash(f"Status of {user.username} is now {user.status}.", "success")
            return redirect(url_for("users.show_user", user_id=user.id))
    return render_detail(user, status_form=form), 400


@bp.post("/<int:user_id>/password")
@admin_required
def reset_password(user_id: int):
    user = user_or_404(user_id)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        _, ok = _commit_or_report(form, lambda: services.reset_password(current_user, user, form.password.data),
                                  ActionType.PASSWORD_CHANGE, user.id)
        if ok:
            flash(f"Password of {user.username} reset; their sessions have ended.", "success")
            return redirect(url_for("users.show_user", user_id=user.id))
    return render_detail(user, password_form=form), 400


@bp.route("/<int:user_id>/delete", methods=["GET", "POST"])
@admin_required
def delete_user(user_id: int):
    user = user_or_404(user_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        name = user.username
        _, ok = _commit_or_report(form, lambda: services.delete_user(current_user, user), ActionType.DELETE, user.id)
        if ok:
            flash(f"User {name} deleted. Their audit events are kept.", "success")
            return redirect(url_for("users.list_users"))
    status = 400 if request.method == "POST" else 200
    return render_template("users/delete.html", user=user, form=form), status
