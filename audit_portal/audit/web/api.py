"""The audit log JSON API under /api/v1/audit-logs (admins only)."""

from __future__ import annotations

from flask import abort
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from marshmallow import RAISE

from ...rest import abort_invalid, envelope, ok, require_admin
from ...rest import documented_errors as _documented_errors
from ..read.export import ExportTooLarge, prepare_export
from ..read.histogram import histogram
from ..read.query import AuditLogRepository, BadCursor, list_page, list_since
from ..read.schemas import (
    AuditErrorQueryArgsSchema,
    AuditLogListResponseSchema,
    AuditLogQueryArgsSchema,
    AuditLogSchema,
    ExportArgsSchema,
    HistogramArgsSchema,
    HistogramSchema,
)
from ..read.tail import BadTailToken, check_tail_token, make_tail_token
from ..write.hooks import leave_request_unrecorded
from ..write.service import log_export
from .download import download_response

blp = Blueprint(
    "Audit Logs", __name__, url_prefix="/api/v1/audit-logs",
    description="Read and export the audit log. **Admins only**: 401 without credentials, 403 for non-admins. "
                "Authenticate with `Authorization: Bearer <token>` (scripts) or the browser session "
                "(unsafe methods then need the `X-CSRFToken` header). Reading the audit log is itself audited.",
)

blp.before_request(require_admin)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]
ListEnvelope = envelope(AuditLogListResponseSchema, "AuditLogListEnvelope")
ItemEnvelope = envelope(AuditLogSchema, "AuditLogEnvelope")
HistogramEnvelope = envelope(HistogramSchema, "HistogramEnvelope")


def _page(args: dict, scope: str) -> dict:
    try:
        page = list_page(args["filters"], args["skip"], args["limit"], args["cursor"], scope)
    except BadCursor as exc:
        abort_invalid("cursor", str(exc))
    return {"items": page.items, "total": page.total, "total_is_exact": page.total_is_exact, "skip": args["skip"],
            "limit": args["limit"], "next_cursor": page.next_cursor}


def _tail(args: dict) -> dict:
    """A live tail's first request (recorded; answers a token) or one of its polls (carries it; not recorded)."""
    filters, user_id, since_id = args["filters"], current_user.id, args["since_id"]
    token = args["tail"]
    if token:
        try:
            started_from = check_tail_token(token, user_id, filters)
        except BadTailToken as exc:
            abort_invalid("tail", str(exc))
        if since_id >= started_from:  # only what arrived after the recorded start
            leave_request_unrecorded()
    else:
        token = make_tail_token(user_id, filters, since_id)
    items, more = list_since(filters, since_id, args["limit"])
    return {"items": items, "total": len(items), "total_is_exact": not more, "skip": 0, "limit": args["limit"],
            "next_cursor": None, "tail_token": token}


def documented_errors(*codes: int):
    """Document the error envelope for ``codes`` on an endpoint."""
    return _documented_errors(blp, *codes)


@blp.route("/")
class AuditLogList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(401, 403, 422)
    @blp.arguments(AuditLogQueryArgsSchema, location="query", unknown=RAISE, as_kwargs=False)
    @blp.response(200, ListEnvelope)
    def get(self, args):
        """List audit events

        Newest first (timestamp, then id, descending). Every filter can be combined; enum values are
        case-insensitive; a date alone in `date_from`/`date_to` means that whole day (UTC).

        ```
        curl -H "Authorization: Bearer $TOKEN" \\
          "http://127.0.0.1:5000/api/v1/audit-logs/?action_type=login_failed&date_from=2026-01-01&limit=100"
        ```
        """
        return ok(_tail(args) if args["since_id"] is not None else _page(args, "list"))


@blp.route("/errors")
class AuditErrorList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(401, 403, 422)
    @blp.arguments(AuditErrorQueryArgsSchema, location="query", unknown=RAISE, as_kwargs=False)
    @blp.response(200, ListEnvelope)
    def get(self, args):
        """List error events

        Only events with `status=ERROR`, with their stack traces (any other `status` is refused). Default page
        size 50, at most 200. Filter by `severity` (WARNING, ERROR, CRITICAL), `error_type` and the other filters.

        ```
        curl -H "Authorization: Bearer $TOKEN" \\
          "http://127.0.0.1:5000/api/v1/audit-logs/errors?severity=critical"
        ```
        """
        return ok(_page(args, "errors"))


@blp.route("/histogram")
class AuditLogHistogram(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(401, 403, 422)
    @blp.arguments(HistogramArgsSchema, location="query", unknown=RAISE, as_kwargs=False)
    @blp.response(200, HistogramEnvelope)
    def get(self, args):
        """Events per time bucket

        The events matching the filters (the list's, `q` included) counted per equal time bucket and status.
        The range is the query's (`date_from`/`date_to`, `created:` terms), or the last 30 days. Up to
        `AUDIT_HISTOGRAM_EXACT_LIMIT` matching events the counts are exact; past it each bucket reads a share
        of that many and the fuller ones are estimated: `exact` is then false (per bucket too).

        ```
        curl -H "Authorization: Bearer $TOKEN" \\
          "http://127.0.0.1:5000/api/v1/audit-logs/histogram?q=action:login_failed&buckets=24&date_from=2026-11-30"
        ```
        """
        return ok(histogram(args["filters"], args["buckets"]))


@blp.route("/export")
class AuditLogExport(MethodView):
    @blp.doc(security=SECURITY, responses={
        "200": {"description": "The file: CSV, a JSON array, or NDJSON",
                "content": {"text/csv": {}, "application/json": {}, "application/x-ndjson": {}}}})
    @documented_errors(401, 403, 422)
    @blp.arguments(ExportArgsSchema, location="query", unknown=RAISE, as_kwargs=False)
    def get(self, args):
        """Export audit events

        The whole filtered set (paging parameters do not apply), streamed as a download. Over
        `AUDIT_EXPORT_MAX_ROWS` matching events the answer is a 422 envelope that says how many matched;
        nothing partial is sent. Exports are recorded as EXPORT events.

        ```
        curl -H "Authorization: Bearer $TOKEN" -o audit.csv \\
          "http://127.0.0.1:5000/api/v1/audit-logs/export?format=csv&date_from=2026-01-01&date_to=2026-01-31"
        ```
        """
        try:
            export = prepare_export(args["filters"], args["format"])
        except ExportTooLarge as exc:
            abort(422, description=str(exc))
        log_export(export.count, export.format.value, args["filters"].active(), "api")
        return download_response(export)


@blp.route("/<int:log_id>")
class AuditLogItem(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(401, 403, 404)
    @blp.response(200, ItemEnvelope)
    def get(self, log_id: int):
        """Get one audit event

        Every field, including metadata, stack trace and request details. 404 when there is no such event.

        ```
        curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/v1/audit-logs/42
        ```
        """
        log = AuditLogRepository().get_by_id(log_id)
        if log is None:
            abort(404, description=f"There is no audit event with id {log_id}.")
        return ok(log)

