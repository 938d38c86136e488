"""The alerts pages (admins only): /admin/alerts/ (open first, filter by state and rule, acknowledge and resolve)
and /admin/alert-rules/ (tune or disable the built-in rules, add and remove custom ones). Input goes through the
API's schemas and the same service."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from ...access import admin_required
from ...extensions import db
from ..alerts import service
from ..alerts.models import AlertSeverity, AlertState, GroupBy
from ..alerts.rules import BUILTINS
from ..alerts.schemas import AlertQueryArgsSchema, AlertRuleCreateSchema, AlertRuleUpdateSchema

bp = Blueprint("alerts", __name__, url_prefix="/admin")
_RULE_FIELDS = ("name", "filters", "group_by", "threshold", "window_seconds", "severity")
_TUNABLE = ("threshold", "window_seconds", "severity", "parameter")
_BAD_TOKEN = "The form's security token is missing or wrong. Reload the page and try again."


def nav_counts() -> dict:
    """The open alerts' count for the nav bar (admins only: nobody else sees the link). A page never fails for
    it: with the database unreachable (the 503 page of an outage) the nav shows no count."""
    try:  # is_admin may load the user's role: inside too
        if not (current_user.is_authenticated and getattr(current_user, "is_admin", False)):
            return {}
        return {"open_alerts": service.open_count()}
    except SQLAlchemyError:
        db.session.rollback()
        return {}


@bp.get("/alerts/")
@admin_required
def list_alerts():
    try:
        args = AlertQueryArgsSchema().load(request.args)
    except ValidationError as exc:
        return render_template("alerts/list.html", alerts=[], args={}, errors=exc.messages, rules=_rule_names(),
                               states=AlertState.values(), csrf_form=FlaskForm()), 422
    return render_template("alerts/list.html", alerts=service.list_alerts(args.get("state"), args.get("rule")),
                           args=args, errors={}, rules=_rule_names(), states=AlertState.values(),
                           csrf_form=FlaskForm())


def _rule_names() -> list[str]:
    return [rule.name for rule in service.list_rules()]


@bp.post("/alerts/<int:alert_id>/<any(acknowledge, resolve):action>")
@admin_required
def act_on_alert(alert_id: int, action: str):
    if not FlaskForm().validate_on_submit():
        abort(400, description=_BAD_TOKEN)
    try:
        alert = service.get_alert(alert_id)
        (service.acknowledge if action == "acknowledge" else service.resolve)(current_user, alert)
    except service.NotFound as exc:
        abort(404, description=str(exc))
    except service.AlertError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return redirect(url_for("alerts.list_alerts"))
    db.session.commit()
    flash(f"Alert #{alert_id} {'acknowledged' if action == 'acknowledge' else 'resolved'}.", "success")
    return redirect(url_for("alerts.list_alerts"))


def _render_rules(form: dict, errors: dict, status: int = 200):
    rules = service.list_rules()
    db.session.commit()  # the built-in rules are created on first use
    return render_template("alerts/rules.html", rules=rules, builtins=BUILTINS, form=form, errors=errors,
                           group_bys=GroupBy.values(), severities=AlertSeverity.values(),
                           csrf_form=FlaskForm()), status


@bp.get("/alert-rules/")
@admin_required
def list_rules():
    return _render_rules({}, {})[0]


def _filters(text: str, errors: dict) -> dict:
    filters = {}
    for line in (text or "").splitlines():
        if line.strip():
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                errors["filters"] = [f"One per line, as name=value: {line[:60]!r} is not."]
            filters[key.strip()] = value.strip()
    return filters


def _numbers(raw: dict) -> dict:
    """Form text to the schema's integers (a value that is not a number is left for the schema to refuse)."""
    return {k: int(v) if k in ("threshold", "window_seconds", "parameter") and v.isascii() and v.isdecimal() else v
            for k, v in raw.items()}


@bp.post("/alert-rules/")
@admin_required
def add_rule():
    form = {name: request.form.get(name, "") for name in _RULE_FIELDS}
    if not FlaskForm().validate_on_submit():
        return _render_rules(form, {"form": [_BAD_TOKEN]}, 400)
    errors: dict = {}
    raw = _numbers({k: v.strip() for k, v in form.items() if k != "filters" and v.strip()})
    raw["filters"] = _filters(form["filters"], errors)
    try:
        data = AlertRuleCreateSchema().load(raw)
        rule = service.create_rule(current_user, data) if not errors else None
    except ValidationError as exc:
        errors.update(exc.messages)
    except service.AlertError as exc:
        db.session.rollback()
        errors[exc.field] = [exc.message]
    if errors:
        return _render_rules(form, errors, 422)
    db.session.commit()
    flash(f"Rule {rule.name} added.", "success")
    return redirect(url_for("alerts.list_rules"))


@bp.post("/alert-rules/<int:rule_id>/<any(update, remove):action>")
@admin_required
def act_on_rule(rule_id: int, action: str):
    if not FlaskForm().validate_on_submit():
        abort(400, description=_BAD_TOKEN)
    try:
        rule = service.get_rule(rule_id)
        name = rule.name
        if action == "remove":
            service.delete_rule(current_user, rule)
        else:
            changes = _numbers({k: request.form[k].strip() for k in _TUNABLE if request.form.get(k, "").strip()})
            changes["enabled"] = request.form.get("enabled") == "on"
            service.update_rule(current_user, rule, AlertRuleUpdateSchema().load(changes))
    except service.NotFound as exc:
        abort(404, description=str(exc))
    except ValidationError as exc:
        db.session.rollback()
        return _render_rules({}, {f"{name}: {field}": msgs for field, msgs in exc.messages.items()}, 422)
    except service.AlertError as exc:
        db.session.rollback()
        flash(f"{name}: {exc.message}", "danger")
        return redirect(url_for("alerts.list_rules"))
    db.session.commit()
    flash(f"Rule {name} {'removed' if action == 'remove' else 'saved'}.", "success")
    return redirect(url_for("alerts.list_rules"))
