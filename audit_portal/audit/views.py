"""HTML pages: the log viewer, an event's detail page and the error dashboard (admins only)."""

from __future__ import annotations

from flask import abort, render_template, request
from marshmallow import ValidationError

from ..auth.decorators import admin_required
from . import bp
from .enums import ActionType, Category, ErrorSeverity, ResourceType, Status
from .filters import AuditFilters
from .repository import AuditLogRepository
from .schemas import AuditLogFilterSchema

PAGE_SIZES = (25, 50, 100, 200)
FILTER_CHOICES = {
    "action_type": ActionType.values(),
    "resource_type": ResourceType.values(),
    "status": Status.values(),
    "category": Category.values(),
    "severity": ErrorSeverity.values(),
}


def _parse_filters() -> tuple[AuditFilters, dict, dict]:
    """Filters from the query string: (parsed filters, the raw values to refill the form, errors)."""
    raw = {k: v for k, v in request.args.items() if k in AuditFilters.names() and v.strip() != ""}
    try:
        return AuditLogFilterSchema().load(raw), raw, {}
    except ValidationError as exc:
        return AuditFilters(), raw, exc.messages


def _paging(default_limit: int = 50, max_limit: int = 200) -> tuple[int, int]:
    try:
        skip = max(int(request.args.get("skip", 0)), 0)
        limit = int(request.args.get("limit", default_limit))
    except ValueError:
        abort(400, description="skip and limit must be whole numbers.")
    if not 1 <= limit <= max_limit:
        abort(400, description=f"limit must be between 1 and {max_limit}.")
    return skip, limit


@admin_required
def list_logs():
    filters, raw, errors = _parse_filters()
    skip, limit = _paging()
    repo = AuditLogRepository()
    items = [] if errors else repo.get_all(filters, skip, limit)
    total = 0 if errors else repo.count(filters)
    return render_template("audit/list.html", items=items, total=total, skip=skip, limit=limit, raw=raw,
                           errors=errors, choices=FILTER_CHOICES, page_sizes=PAGE_SIZES), 422 if errors else 200


@admin_required
def show_log(log_id: int):
    log = AuditLogRepository().get_by_id(log_id)
    if log is None:
        abort(404, description=f"There is no audit event with id {log_id}.")
    return render_template("audit/detail.html", log=log)


@admin_required
def errors():
    filters, raw, errors = _parse_filters()
    skip, limit = _paging(50, 200)
    filters = AuditFilters(**{**filters.__dict__, "status": Status.ERROR.value})
    repo = AuditLogRepository()
    items = [] if errors else repo.get_all(filters, skip, limit)
    total = 0 if errors else repo.count(filters)
    return render_template("audit/errors.html", items=items, total=total, skip=skip, limit=limit, raw=raw,
                           errors=errors, choices=FILTER_CHOICES, page_sizes=PAGE_SIZES), 422 if errors else 200


bp.add_url_rule("/", view_func=list_logs)
bp.add_url_rule("/errors", view_func=errors)
bp.add_url_rule("/<int:log_id>", view_func=show_log)
