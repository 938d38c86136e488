"""HTML pages: the log viewer, an event's detail page, the error dashboard and the download (admins only).

Query strings go through the API's own schemas (``read/schemas.py``): same rules, same messages, shown on
the page with a 422. The one difference is that a blank form field means "any" (a GET form sends every field).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, redirect, render_template, request
from flask_login import current_user
from marshmallow import ValidationError

from ...access import admin_required
from ...params import repeated_parameters
from ...templating import viewer_timezone
from ...timeutil import utcnow, zone
from ..read.dashboard import error_group, error_groups, errors_per_day, errors_without_fingerprint, occurrences
from ..read.export import ExportTooLarge, prepare_export
from ..read.histogram import histogram
from ..read.query import AuditFilters, AuditLogRepository, BadCursor, list_page
from ..read.schemas import AuditErrorQueryArgsSchema, AuditLogViewerArgsSchema, ExportArgsSchema
from ..read.search import QueryError, parse, suggestions
from ..record.actors import directory
from ..record.enums import ActionType, Category, ErrorSeverity, ResourceType, Status
from ..saved.service import default_view
from ..write.service import log_export
from .charts import duration_text, histogram_bars, moment_param, stacked_bars
from .download import download_response

bp = Blueprint("audit", __name__, url_prefix="/admin/audit-logs")
bp.add_app_template_filter(duration_text, "duration_text")
bp.add_app_template_filter(moment_param, "moment_param")
bp.add_app_template_global(suggestions, "query_suggestions")  # the macros are imported without context

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
_FILTER_NAMES = frozenset(AuditFilters.names())


class _Query:
    """A page's query string, read through one of the API's schemas."""

    def __init__(self, schema):
        given = {key: value for key, value in request.args.items() if value.strip() != "" and key != "view"}
        #: The filter values as given: they refill the form and go into every link of the page.
        self.raw = {key: value for key, value in given.items() if key in _FILTER_NAMES}
        self.errors = repeated_parameters(request.args)
        try:
            loaded = schema.load(given)
            valid = loaded
        except ValidationError as exc:
            loaded, valid = None, exc.valid_data or {}
            self.errors = {**exc.messages, **self.errors}
        #: What the schema loaded (``{"filters", "skip", "limit", "cursor"}``...); None when anything is wrong.
        self.args = None if self.errors else loaded
        # What the page still shows when something is wrong: the valid page size, position and user.
        self.skip, self.limit = valid.get("skip", 0), valid.get("limit", 50)
        self.user_id = loaded["filters"].user_id if loaded else valid.get("user_id")

    def refuse(self, name: str, message: str) -> None:
        self.args, self.errors = None, {**self.errors, name: [message]}

    def page_context(self, whole_days: bool = False) -> dict:
        """What every list page's filter bar, filter chips and pager need. ``whole_days``: the quick ranges of a
        week or more start at a UTC midnight (the error dashboard: its chart has a bar per day, and whole days
        are answered from the rollup)."""
        names = directory().names([self.user_id]) if self.user_id else {}
        now = utcnow()
        quick_ranges = [(label, (now - span).date().isoformat() if whole_days and span.days >= 7
                         else (now - span).strftime("%Y-%m-%dT%H:%M")) for label, span in QUICK_RANGES]
        return dict(raw=self.raw, errors=self.errors, skip=self.skip, limit=self.limit, choices=FILTER_CHOICES,
                    page_sizes=PAGE_SIZES, user_names=names, quick_ranges=quick_ranges, q_terms=self.q_terms())

    def q_terms(self) -> list[tuple[str, str]]:
        """Each term of the query, with the query without it: one chip per term, removable on its own."""
        q = self.raw.get("q", "")
        try:
            terms = parse(q) if q and "q" not in self.errors else []
        except QueryError:
            return []
        return [(t.text, (q[:t.offset].rstrip() + " " + q[t.offset + len(t.text):].lstrip()).strip()) for t in terms]


def _render_list(query: _Query, status: int | None = None, **context):
    """The viewer: Next links carry a keyset cursor (fast at any depth); counts stop at AUDIT_COUNT_LIMIT."""
    page, chart, args = None, None, query.args
    if args is not None:
        try:
            page = list_page(args["filters"], 0 if args["cursor"] else args["skip"], args["limit"], args["cursor"],
                             scope="html")
            chart = histogram_bars(histogram(args["filters"]), zone(viewer_timezone()))
        except BadCursor as exc:
            query.refuse("cursor", f"{exc} The link may be stale: start again from the first page.")
    return render_template(
        "audit/list.html", items=page.items if page else [], total=page.total if page else 0,
        total_is_exact=page.total_is_exact if page else True, next_cursor=page.next_cursor if page else None,
        histogram=chart, **query.page_context(), **context,
    ), status or (422 if query.errors else 200)


@bp.get("/")
@admin_required
def list_logs():
    """The viewer; visited without any parameter, it opens the admin's default saved view (``view=all``: not)."""
    if not request.args:
        default = default_view(current_user.id)
        if default is not None:
            return redirect(default.url)
    return _render_list(_Query(AuditLogViewerArgsSchema()))


@bp.get("/<int:log_id>")
@admin_required
def show_log(log_id: int):
    repo = AuditLogRepository()
    log = repo.get_by_id(log_id)
    if log is None:
        abort(404, description=f"There is no audit event with id {log_id}.")
    same_request = repo.get_all(AuditFilters(request_id=log.request_id), 0, SAME_REQUEST_MAX) if log.request_id else []
    occurrences = repo.count(AuditFilters(fingerprint=log.fingerprint)) if log.fingerprint else 0
    return render_template("audit/detail.html", log=log, same_request=same_request, occurrences=occurrences)


@bp.get("/errors")
@admin_required
def errors():
    """Errors grouped by fingerprint with a chart; with ``fingerprint=`` the occurrences of one group. Visited
    without any parameter, it opens the admin's default saved view of this page (``view=all``: not)."""
    if not request.args:
        default = default_view(current_user.id, "errors")
        if default is not None:
            return redirect(default.url)
    query = _Query(AuditErrorQueryArgsSchema(exclude=("cursor",)))  # groups page by skip: no cursor here
    args, context = query.args, query.page_context(whole_days=True)
    if args is None:
        return render_template("audit/errors.html", groups=[], group=None, items=[], total=0, chart=None,
                               unfingerprinted=(0, True), **context), 422
    filters, skip, limit = args["filters"], args["skip"], args["limit"]
    chart = stacked_bars(errors_per_day(filters))
    if filters.fingerprint:
        group = error_group(filters)
        items = occurrences(filters, skip, limit)
        return render_template("audit/errors.html", groups=None, group=group, items=items,
                               total=group.count if group else 0, chart=chart, unfingerprinted=(0, True), **context)
    groups, total = error_groups(filters, skip, limit)
    return render_template("audit/errors.html", groups=groups, group=None, items=[], total=total, chart=chart,
                           unfingerprinted=errors_without_fingerprint(filters), **context)


@bp.get("/export")
@admin_required
def export():
    """The viewer's Export buttons: the same filters, the whole filtered set, as a download."""
    query = _Query(ExportArgsSchema())
    if query.args is None:
        return _render_list(query)
    args = query.args
    try:
        export = prepare_export(args["filters"], args["format"])
    except ExportTooLarge as exc:
        query.args = {"filters": args["filters"], "skip": 0, "limit": 50, "cursor": None}  # the first page
        return _render_list(query, status=422, export_error=str(exc))
    log_export(export.count, export.format.value, args["filters"].active(), "ui")
    return download_response(export)
