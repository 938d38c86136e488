"""The stream destinations page (/admin/streams/, admins only): the list with state and lag, add, pause,
resume, test, remove. Input goes through the API's schema and the same service."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from marshmallow import ValidationError

from ...access import admin_required
from ...extensions import db
from ..streams import service
from ..streams.models import StreamFormat, StreamKind
from ..streams.schemas import STARTS, StreamCreateSchema

bp = Blueprint("streams", __name__, url_prefix="/admin/streams")
_FORM_FIELDS = ("name", "kind", "format", "url", "path", "ca_file", "start", "filters", "headers")


def _lines(text: str, separator: str, field: str, errors: dict) -> dict:
    """``key<separator>value`` per line (blank lines skipped); a line without one is an error on ``field``."""
    pairs = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(separator)
        if not sep or not key.strip():
            errors[field] = [f"One per line, as name{separator}value: {line[:60]!r} is not."]
            continue
        pairs[key.strip()] = value.strip()
    return pairs


def _render(form: dict, errors: dict, status: int = 200):
    return render_template("streams/list.html", destinations=service.list_destinations(), form=form, errors=errors,
                           kinds=StreamKind.values(), formats=StreamFormat.values(), starts=STARTS,
                           csrf_form=FlaskForm()), status


@bp.get("/")
@admin_required
def list_streams():
    return _render({}, {})[0]


@bp.post("/")
@admin_required
def add_stream():
    form = {name: request.form.get(name, "") for name in _FORM_FIELDS}
    if not FlaskForm().validate_on_submit():
        return _render(form, {"form": ["The form's security token is missing or wrong. Reload the page."]}, 400)
    errors: dict = {}
    raw = {key: value.strip() for key, value in form.items() if key not in ("filters", "headers") and value.strip()}
    raw["filters"] = _lines(form["filters"], "=", "filters", errors)
    raw["headers"] = _lines(form["headers"], ":", "headers", errors)
    try:
        data = StreamCreateSchema().load({k: v for k, v in raw.items() if v != {}})
    except ValidationError as exc:
        errors.update(exc.messages)
    if errors:
        return _render(form, errors, 422)
    try:
        destination, secret = service.create_destination(current_user, data)
    except service.StreamError as exc:
        db.session.rollback()
        return _render(form, {exc.field: [exc.message]}, 422)
    db.session.commit()
    flash(f"Destination {destination.name} added.", "success")
    if secret:
        return render_template("streams/secret.html", destination=destination, secret=secret)
    return redirect(url_for("streams.list_streams"))


def _one(stream_id: int):
    if not FlaskForm().validate_on_submit():
        abort(400, description="The form's security token is missing or wrong. Reload the page and try again.")
    try:
        return service.get_destination(stream_id)
    except service.NotFound as exc:
        abort(404, description=str(exc))


@bp.post("/<int:stream_id>/<any(pause, resume, test, remove):action>")
@admin_required
def act(stream_id: int, action: str):
    destination = _one(stream_id)
    name = destination.name
    try:
        if action == "remove":
            service.delete_destination(current_user, destination)
        elif action == "test":
            service.send_test(current_user, destination)
        else:
            service.set_paused(current_user, destination, action == "pause")
    except service.StreamError as exc:
        db.session.rollback()
        flash(f"{name}: {exc.message}", "danger")
        return redirect(url_for("streams.list_streams"))
    db.session.commit()
    done = {"pause": "paused", "resume": "resumed", "test": "sent a test message", "remove": "removed"}[action]
    flash(f"{name}: {done}.", "success")
    return redirect(url_for("streams.list_streams"))
