"""HTML pages: the log viewer, an event's detail page, the error dashboard and the download (admins only)."""

from __future__ import annotations

from flask import abort, render_template, request

from ..auth.decorators import admin_required
from . import bp
from .api import download_response
from .charts import stacked_bars
from .dashboard import error_groups, errors_per_day
from .enums import ActionType, Category, ErrorSeverity, ExportFormat, ResourceType, Status
from .exporter import ExportTooLarge, prepare_export
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
    """Filters from the query string: (parsed filters, the raw values to refill the form, errors).

    Empty form fields mean "any"; a parameter the viewer does not know is an error, not ignored."""
    from marshmallow import ValidationError

    known = set(AuditFilters.names()) | {"skip", "limit", "format"}
    errors = {k: ["Unknown parameter."] for k in request.args if k not in known}
    raw = {k: v for k, v in request.args.items() if k in AuditFilters.names() and v.strip() != ""}
    try:
        filters = AuditLogFilterSchema().load(raw)
    except ValidationError as exc:
        return AuditFilters(), raw, {**exc.messages, **errors}
    return filters, raw, errors


def _paging(default_limit: int = 50, max_limit: int = 200) -> tuple[int, int, dict]:
    errors = {}
    try:
        skip = int(request.args.get("skip") or 0)
        if skip < 0:
            raise ValueError
    except ValueError:
        skip, errors["skip"] = 0, ["Must be a whole number, 0 or more."]
    try:
        limit = int(request.args.get("limit") or default_limit)
        if not 1 <= limit <= max_limit:
            raise ValueError
    except ValueError:
        limit, errors["limit"] = default_limit, [f"Must be a whole number from 1 to {max_limit}."]
    return skip, limit, errors


def _render_list(template: str, filters: AuditFilters, raw: dict, errors: dict, default_limit=50, max_limit=200,
                 **context):
    skip, limit, paging_errors = _paging(default_limit, max_limit)
    errors = {**errors, **paging_errors}
    repo = AuditLogRepository()
    items = [] if errors else repo.get_all(filters, skip, limit)
    total = 0 if errors else repo.count(filters)
    status = context.pop("status", None) or (422 if errors else 200)
    return render_template(template, items=items, total=total, skip=skip, limit=limit, raw=raw, errors=errors,
                           choices=FILTER_CHOICES, page_sizes=PAGE_SIZES, **context), status


@bp.get("/")
@admin_required
def list_logs():
    filters, raw, errors = _parse_filters()
    return _render_list("audit/list.html", filters, raw, errors)


@bp.get("/<int:log_id>")
@admin_required
def show_log(log_id: int):
    log = AuditLogRepository().get_by_id(log_id) if log_id < 2**63 else None
    if log is None:
        abort(404, description=f"There is no audit event with id {log_id}.")
    return render_template("audit/detail.html", log=log)


@bp.get("/errors")
@admin_required
def errors():
    """Errors grouped by fingerprint with a chart; with ``fingerprint=`` the occurrences of one group."""
    filters, raw, errors = _parse_filters()
    filters = AuditFilters(**{**filters.__dict__, "status": Status.ERROR.value})
    skip, limit, paging_errors = _paging(50, 200)
    errors = {**errors, **paging_errors}
    if errors:
        return render_template("audit/errors.html", groups=[], total=0, items=[], skip=skip, limit=limit, raw=raw,
                               errors=errors, chart=None, choices=FILTER_CHOICES, page_sizes=PAGE_SIZES), 422
    chart = stacked_bars(errors_per_day(filters))
    if filters.fingerprint:
        return _render_list("audit/errors.html", filters, raw, errors, chart=chart, groups=None)
    groups, total = error_groups(filters, skip, limit)
    return render_template("audit/errors.html", groups=groups, total=total, items=[], skip=skip, limit=limit, raw=raw,
                           errors=errors, chart=chart, choices=FILTER_CHOICES, page_sizes=PAGE_SIZES)


@bp.get("/export")
@admin_required
def export():
    """The viewer's Export buttons: the same filters, the whole filtered set, as a download."""
    filters, raw, errors = _parse_filters()
    fmt = request.args.get("format", "csv")
    try:
        ExportFormat.parse(fmt)
    except ValueError as exc:
        errors["format"] = [str(exc)]
    if errors:
        return _render_list("audit/list.html", filters, raw, errors)
    try:
        export = prepare_export(filters, fmt, channel="ui")
    except ExportTooLarge as exc:
        return _render_list("audit/list.html", filters, raw, {}, export_error=str(exc), status=422)
    return download_response(export)
