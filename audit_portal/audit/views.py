"""HTML pages: the log viewer, an event's detail page, the error dashboard and the download (admins only)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from flask import abort, render_template, request
from marshmallow import ValidationError

from ..auth.decorators import admin_required
from ..extensions import db
from ..rest import repeated_parameters
from ..timeutil import utcnow
from . import bp
from .api import download_response
from .charts import stacked_bars
from .dashboard import error_group, error_groups, errors_per_day, errors_without_fingerprint
from .enums import ActionType, Category, ErrorSeverity, ExportFormat, ResourceType, Status
from .exporter import ExportTooLarge, prepare_export
from .filters import AuditFilters
from .paging import BadCursor, fetch_page
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
#: How many events of the same request the detail page lists.
SAME_REQUEST_MAX = 20
#: One-click date ranges offered under the filter bar (they set ``date_from``).
QUICK_RANGES = (("last hour", timedelta(hours=1)), ("24 hours", timedelta(days=1)), ("7 days", timedelta(days=7)),
                ("30 days", timedelta(days=30)))


def _parse_filters(extra: tuple[str, ...] = ()) -> tuple[AuditFilters, dict, dict]:
    """Filters from the query string: (parsed filters, the raw values to refill the form, errors).

    Empty form fields mean "any"; a parameter the page does not know is an error, not ignored."""
    known = [*AuditFilters.names(), "skip", "limit", "cursor", *extra]
    errors = {k: [f"Unknown parameter; the parameters are: {', '.join(known)}."] for k in request.args if k not in known}
    errors.update({k: ["Give this parameter once."] for k in repeated_parameters()})
    raw = {k: v for k, v in request.args.items() if k in AuditFilters.names() and v.strip() != ""}
    try:
        filters = AuditLogFilterSchema().load(raw)
    except ValidationError as exc:
        return AuditFilters(), raw, {**exc.messages, **errors}
    return filters, raw, errors


def _paging(default_limit: int = 50, max_limit: int = 200) -> tuple[int, int, dict]:
    """``skip`` and ``limit`` from the query string. With a ``cursor`` (the Next link), ``skip`` only numbers
    the page for display; the rows come from the keyset position."""
    errors = {}
    try:
        skip = int(request.args.get("skip") or 0)
        if not 0 <= skip < 2**63:
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


def _page_context(raw: dict, errors: dict, skip: int, limit: int, filters: AuditFilters,
                  whole_days: bool = False) -> dict:
    """What every list page's filter bar, filter chips and pager need. ``whole_days``: the quick ranges of a
    week or more start at a UTC midnight (the error dashboard: its chart has a bar per day, and whole days
    are answered from the rollup)."""
    from ..users.models import User

    user = db.session.get(User, filters.user_id) if filters.user_id else None
    now = utcnow()
    quick_ranges = [(label, (now - span).date().isoformat() if whole_days and span.days >= 7
                     else (now - span).strftime("%Y-%m-%dT%H:%M")) for label, span in QUICK_RANGES]
    return dict(raw=raw, errors=errors, skip=skip, limit=limit, choices=FILTER_CHOICES, page_sizes=PAGE_SIZES,
                user_names={filters.user_id: user.username} if user else {}, quick_ranges=quick_ranges)


def _render_list(filters: AuditFilters, raw: dict, errors: dict, status: int | None = None, **context):
    """The viewer: Next links carry a keyset cursor (fast at any depth); counts stop at AUDIT_COUNT_LIMIT."""
    skip, limit, paging_errors = _paging()
    errors = {**errors, **paging_errors}
    page = None
    if not errors:
        cursor = request.args.get("cursor") or None
        try:
            page = fetch_page(filters, 0 if cursor else skip, limit, cursor, scope="html")
        except BadCursor as exc:
            errors["cursor"] = [f"{exc} The link may be stale: start again from the first page."]
    return render_template(
        "audit/list.html", items=page.items if page else [], total=page.total if page else 0,
        total_is_exact=page.total_is_exact if page else True, next_cursor=page.next_cursor if page else None,
        **_page_context(raw, errors, skip, limit, filters), **context,
    ), status or (422 if errors else 200)


@bp.get("/")
@admin_required
def list_logs():
    filters, raw, errors = _parse_filters()
    return _render_list(filters, raw, errors)


@bp.get("/<int:log_id>")
@admin_required
def show_log(log_id: int):
    repo = AuditLogRepository()
    log = repo.get_by_id(log_id) if log_id < 2**63 else None
    if log is None:
        abort(404, description=f"There is no audit event with id {log_id}.")
    same_request = repo.get_all(AuditFilters(request_id=log.request_id), 0, SAME_REQUEST_MAX) if log.request_id else []
    occurrences = repo.count(AuditFilters(fingerprint=log.fingerprint)) if log.fingerprint else 0
    return render_template("audit/detail.html", log=log, same_request=same_request, occurrences=occurrences)


@bp.get("/errors")
@admin_required
def errors():
    """Errors grouped by fingerprint with a chart; with ``fingerprint=`` the occurrences of one group."""
    filters, raw, errors = _parse_filters()
    filters = replace(filters, status=Status.ERROR.value)
    skip, limit, paging_errors = _paging(50, 200)
    errors = {**errors, **paging_errors}
    context = _page_context(raw, errors, skip, limit, filters, whole_days=True)
    if errors:
        return render_template("audit/errors.html", groups=[], group=None, items=[], total=0, chart=None,
                               unfingerprinted=(0, True), **context), 422
    chart = stacked_bars(errors_per_day(filters))
    if filters.fingerprint:
        group = error_group(filters)
        items = AuditLogRepository().get_all(filters, skip, limit)
        return render_template("audit/errors.html", groups=None, group=group, items=items,
                               total=group.count if group else 0, chart=chart, unfingerprinted=(0, True), **context)
    groups, total = error_groups(filters, skip, limit)
    return render_template("audit/errors.html", groups=groups, group=None, items=[], total=total, chart=chart,
                           unfingerprinted=errors_without_fingerprint(filters), **context)


@bp.get("/export")
@admin_required
def export():
    """The viewer's Export buttons: the same filters, the whole filtered set, as a download."""
    filters, raw, errors = _parse_filters(extra=("format",))
    fmt = request.args.get("format", "csv")
    try:
        ExportFormat.parse(fmt)
    except ValueError as exc:
        errors["format"] = [str(exc)]
    if errors:
        return _render_list(filters, raw, errors)
    try:
        export = prepare_export(filters, fmt, channel="ui")
    except ExportTooLarge as exc:
        return _render_list(filters, raw, {}, status=422, export_error=str(exc))
    return download_response(export)
