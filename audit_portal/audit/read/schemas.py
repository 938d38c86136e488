"""marshmallow schemas for audit events: creation, storage, responses, filters and lists."""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from ...params import QueryArgsSchema
from ..record import presentation
from ..record.enums import ActionType, Category, ErrorSeverity, ExportFormat, ResourceType, Status
from ..record.models import DESCRIPTION_MAX, ERROR_TYPE_MAX, USERNAME_SNAPSHOT_MAX
from .erased import ErasableString
from .fields import CaseInsensitiveEnum, DateOrDateTime, IPAddress, no_nul, valid_query
from .histogram import DEFAULT_BUCKETS, MAX_BUCKETS
from .query import AuditFilters
from .search import MAX_QUERY

MAX_INT64 = 2**63 - 1


class AuditLogFilterSchema(QueryArgsSchema):
    """Filters accepted by every list and export endpoint and by the HTML viewer."""

    date_from = DateOrDateTime(metadata={"description": "Events at or after this time (ISO 8601; a date alone "
                                                        "means from the start of that day, UTC)."})
    date_to = DateOrDateTime(end=True, metadata={"description": "Events up to this time (ISO 8601; a date alone "
                                                               "includes that whole day, UTC)."})
    user_id = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_INT64),
                             metadata={"description": "Only events performed by this user id."})
    action_type = CaseInsensitiveEnum(ActionType, metadata={"description": "Only this action type."})
    resource_type = CaseInsensitiveEnum(ResourceType, metadata={"description": "Only this resource type."})
    status = CaseInsensitiveEnum(Status, metadata={"description": "Only this outcome."})
    category = CaseInsensitiveEnum(Category, metadata={"description": "Only this category."})
    severity = CaseInsensitiveEnum(ErrorSeverity, metadata={"description": "Only errors of this severity."})
    error_type = fields.String(validate=[no_nul, validate.Length(min=1, max=ERROR_TYPE_MAX)],
                               metadata={"description": "Only errors of this exception type, e.g. ZeroDivisionError."})
    search = fields.String(validate=[no_nul, validate.Length(min=1, max=200)],
                           metadata={"description": "Case-insensitive text search in the description; "
                                                    "% and _ match themselves."})
    fingerprint = fields.String(validate=[no_nul, validate.Length(equal=32)],
                                metadata={"description": "Only occurrences of this error group."})
    request_id = fields.String(validate=[no_nul, validate.Length(min=8, max=36)],
                               metadata={"description": "Only events produced by this HTTP request."})
    ip_address = IPAddress(metadata={"description": "Only events from this client IP address (IPv4 or IPv6)."})
    username = fields.String(validate=[no_nul, validate.Length(min=1, max=USERNAME_SNAPSHOT_MAX)],
                             metadata={"description": "Only events by the user of this name at the time, and failed "
                                                      "logins that typed it (exact, case-sensitive)."})
    q = fields.String(validate=[no_nul, validate.Length(min=1, max=MAX_QUERY), valid_query], metadata={
        "description": "A search query (README, Filters): key:value terms (action, resource, status, category, "
                       "severity, error, user, ip (an address or a range such as 10.0.0.0/8), path (exact, or a "
                       "prefix with *), method, request, token, created (>=, >, <=, < a date or date-time, or "
                       "a..b)), -key:value to negate, key:a,b for either, \"quoted values\", and bare words "
                       "that search the description. ANDed with the other filters.",
        "example": "action:login_failed -ip:10.0.0.0/8 created:>=2026-11-01"})

    @validates_schema
    def _check_range(self, data, **kwargs):
        if data.get("date_from") and data.get("date_to") and data["date_from"] >= data["date_to"]:
            raise ValidationError("date_from must be before date_to.", field_name="date_from")

    @post_load
    def _to_filters(self, data, **kwargs):
        return AuditFilters(**data)


def _skip_field():
    return fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_INT64,
                                                                  error="Must be a whole number, 0 or more."),
                          metadata={"description": "How many matching events to skip (default 0)."})


def _limit_field(maximum: int):
    return fields.Integer(load_default=50, validate=validate.Range(min=1, max=maximum,
                                                                   error="Must be a whole number from {min} to {max}."),
                          metadata={"description": f"Page size (default 50, at most {maximum})."})


class AuditLogPageArgsSchema(AuditLogFilterSchema):
    """Filters plus paging, for pages of at most 200 events. Loads to ``{"filters", "skip", "limit", "cursor"}``."""

    skip = _skip_field()
    limit = _limit_field(200)
    cursor = fields.String(validate=validate.Length(min=1, max=500),
                           metadata={"description": "The `next_cursor` of the previous page: keyset paging that "
                                                    "stays fast and stable while events arrive. Use the same "
                                                    "filters; `skip` must then be 0."})

    #: Whether ``skip`` may come with a ``cursor``, to number the page (the viewer's Next link carries both).
    skip_numbers_cursor_pages = False

    @validates_schema
    def _cursor_or_skip(self, data, **kwargs):
        if data.get("cursor") and data.get("skip") and not self.skip_numbers_cursor_pages:
            raise ValidationError("Give either skip or cursor, not both.", field_name="cursor")

    @post_load
    def _to_filters(self, data, **kwargs):
        paging = {"skip": data.pop("skip"), "limit": data.pop("limit"), "cursor": data.pop("cursor", None)}
        return {"filters": AuditFilters(**data), **paging}


class AuditLogViewerArgsSchema(AuditLogPageArgsSchema):
    """The HTML viewer's query string: its Next link keeps ``skip`` beside the cursor, to number the page (the
    rows come from the cursor's position)."""

    skip_numbers_cursor_pages = True


class AuditLogQueryArgsSchema(AuditLogPageArgsSchema):
    """Filters plus paging, for ``GET /api/v1/audit-logs/`` (at most 500 per page), and the live tail's
    ``since_id``/``tail``. Loads to ``{"filters", "skip", "limit", "cursor", "since_id", "tail"}``."""

    limit = _limit_field(500)
    since_id = fields.Integer(strict=False, validate=validate.Range(min=0, max=MAX_INT64), metadata={
        "description": "Live tail: only events with a larger id, oldest first (at most `limit`). Without `tail` the "
                       "request is recorded and answers a `tail_token`; polls that pass it back are not recorded one "
                       "by one. Re-read a short window behind your newest id: an event may commit a moment after "
                       "one with a larger id."})
    tail = fields.String(validate=validate.Length(min=1, max=300), metadata={
        "description": "The `tail_token` of the tail's first answer (with `since_id`)."})

    @validates_schema
    def _tail_rules(self, data, **kwargs):
        if data.get("since_id") is None:
            if data.get("tail"):
                raise ValidationError("tail goes with since_id.", field_name="tail")
            return
        for other in ("cursor", "skip"):
            if data.get(other):
                raise ValidationError(f"Give either since_id or {other}, not both.", field_name="since_id")

    @post_load
    def _to_filters(self, data, **kwargs):
        tail = {"since_id": data.pop("since_id", None), "tail": data.pop("tail", None)}
        return {**super()._to_filters(data, **kwargs), **tail}


ERRORS_ONLY = "This list holds only ERROR events: leave status out, or give ERROR."


class AuditErrorQueryArgsSchema(AuditLogPageArgsSchema):
    """Filters plus paging for the error events: ``GET /api/v1/audit-logs/errors`` and the error dashboard
    (at most 200 per page). The one "errors only" rule: ``status`` is ERROR, given or not."""

    status = CaseInsensitiveEnum(Status, validate=validate.Equal(Status.ERROR.value, error=ERRORS_ONLY),
                                 metadata={"description": "Always ERROR here (any other value is refused)."})

    @post_load
    def _to_filters(self, data, **kwargs):
        return super()._to_filters({**data, "status": Status.ERROR.value}, **kwargs)


class ExportArgsSchema(AuditLogFilterSchema):
    """Filters plus the file format, for exports. Loads to ``{"filters", "format"}``."""

    format = CaseInsensitiveEnum(ExportFormat, load_default=ExportFormat.CSV.value,
                                 metadata={"description": "csv (default), json (one array) or ndjson (one item per line)."})

    @post_load
    def _to_filters(self, data, **kwargs):
        fmt = data.pop("format")
        return {"filters": AuditFilters(**data), "format": fmt}


#: The example event's metadata (the API docs show one error event throughout).
_EXAMPLE_METADATA = {"message": "division by zero", "location": "audit_portal/reports/totals.py:average_per_day"}


def _ex(example, description: str | None = None) -> dict:
    """Field metadata with an example (Swagger UI shows a realistic event) and, optionally, a description."""
    return {"example": example, **({"description": description} if description else {})}


class AuditLogBaseSchema(Schema):
    """Fields shared by every representation of an event."""

    action_type = CaseInsensitiveEnum(ActionType, required=True, metadata=_ex("EXCEPTION_RAISED"))
    resource_type = CaseInsensitiveEnum(ResourceType, required=True, metadata=_ex("SYSTEM"))
    resource_id = fields.String(allow_none=True, validate=validate.Length(max=64), metadata=_ex(None))
    description = fields.String(load_default="", validate=validate.Length(max=DESCRIPTION_MAX),
                                metadata=_ex("ZeroDivisionError: division by zero"))
    metadata = fields.Dict(allow_none=True, metadata=_ex(_EXAMPLE_METADATA, "Context; {old, new} for changes."))
    status = CaseInsensitiveEnum(Status, load_default=Status.SUCCESS.value, metadata=_ex("ERROR"))
    is_sensitive = fields.Boolean(load_default=False, metadata=_ex(False))


class AuditLogCreateSchema(AuditLogBaseSchema):
    """What a caller supplies to record an event (the app fills time, actor and request context)."""

    class Meta:
        unknown = RAISE

    user_id = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=MAX_INT64))
    severity = CaseInsensitiveEnum(ErrorSeverity, allow_none=True)
    error_type = fields.String(allow_none=True, validate=validate.Length(max=ERROR_TYPE_MAX))


class AuditLogInDBSchema(AuditLogBaseSchema):
    """Every stored column."""

    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(dump_only=True, metadata=_ex(48213))
    event_id = fields.String(metadata=_ex("01936f4e-8c1a-7b3e-9f2d-6a4c8e1b2d3f", "UUID; unique."))
    timestamp = fields.DateTime(format="iso", metadata=_ex("2026-11-30T14:05:09.412318+00:00", "UTC, ISO 8601."))
    user_id = fields.Integer(allow_none=True, metadata=_ex(7))
    username = ErasableString(allow_none=True, metadata=_ex("alice", "The actor's username at the time; "
                                                               "\"[erased]\" after an erasure."))
    category = fields.String(metadata=_ex("errors"))
    metadata = fields.Dict(attribute="event_metadata", allow_none=True,
                           metadata=_ex(_EXAMPLE_METADATA, "Context; {old, new} for changes. Secrets are redacted."))
    ip_address = ErasableString(allow_none=True, metadata=_ex("203.0.113.24", "\"[erased]\" after an erasure."))
    user_agent = ErasableString(allow_none=True, metadata=_ex("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                                                              "\"[erased]\" after an erasure."))
    severity = fields.String(allow_none=True, metadata=_ex("ERROR", "WARNING, ERROR or CRITICAL (errors only)."))
    error_type = fields.String(allow_none=True, metadata=_ex("ZeroDivisionError"))
    stack_trace = fields.String(allow_none=True, metadata=_ex(
        "Traceback (most recent call last):\n  File \"audit_portal/reports/totals.py\", line 41, in "
        "average_per_day\n    return total / days\nZeroDivisionError: division by zero\n"))
    fingerprint = fields.String(allow_none=True, metadata=_ex("5b0f7e2c9a1d4e8f3b6a0c2d7e9f1a4b",
                                                              "Groups occurrences of one error."))
    request_id = fields.String(allow_none=True, metadata=_ex("01936f4e-8b77-7c21-a4d9-3e5f7a9b1c2d",
                                                             "Shared by every event of one HTTP request."))
    http_method = fields.String(allow_none=True, metadata=_ex("POST"))
    path = fields.String(allow_none=True, metadata=_ex("/admin/reports/totals"))
    status_code = fields.Integer(allow_none=True, metadata=_ex(500))
    duration_ms = fields.Integer(allow_none=True, metadata=_ex(37))


class AuditLogSchema(AuditLogInDBSchema):
    """An event as the API returns it, with the helpers a UI needs."""

    status_color = fields.Function(lambda log: presentation.status_colour(log.status),
                                   metadata={"description": "green (SUCCESS), red (FAILURE), orange (ERROR).",
                                             "example": "orange"})
    severity_color = fields.Function(lambda log: presentation.severity_colour(log.severity),
                                     metadata={"description": "red (CRITICAL), orange (ERROR), yellow (WARNING).",
                                               "example": "orange"})
    readable_description = fields.Function(lambda log: presentation.readable_description(log),
                                           metadata={"description": "The description, naming the actor.",
                                                     "example": "alice: ZeroDivisionError: division by zero"})
    actor = fields.Function(lambda log: presentation.actor_name(log),
                            metadata={"description": "Who did it: the username, or 'anonymous'.", "example": "alice"})


class AuditLogListResponseSchema(Schema):
    """One page of events."""

    items = fields.List(fields.Nested(AuditLogSchema), metadata={"description": "Events, newest first."})
    total = fields.Integer(metadata={"description": "How many events match the filters (a lower bound when "
                                                    "total_is_exact is false).", "example": 1})
    total_is_exact = fields.Boolean(metadata={"description": "False when more than AUDIT_COUNT_LIMIT events match "
                                                             "(AUDIT_SEARCH_COUNT_LIMIT with `search` or a `q` of several "
                                                             "terms or with a bare word): "
                                                             "counting stopped there.", "example": True})
    skip = fields.Integer(metadata={"description": "Offset of this page.", "example": 0})
    limit = fields.Integer(metadata={"description": "Page size.", "example": 50})
    next_cursor = fields.String(allow_none=True, metadata={"description": "Pass as `cursor` for the next page; "
                                                                          "null on the last page.", "example": None})
    tail_token = fields.String(allow_none=True, metadata={"description": "With `since_id` and no `tail`: pass it "
                                                                         "as `tail` in the polls that follow.",
                                                          "example": None})


class HistogramArgsSchema(AuditLogFilterSchema):
    """Filters plus the number of buckets, for the histogram. Loads to ``{"filters", "buckets"}``."""

    buckets = fields.Integer(load_default=DEFAULT_BUCKETS, validate=validate.Range(
        min=1, max=MAX_BUCKETS, error="Must be a whole number from {min} to {max}."),
        metadata={"description": f"How many equal time buckets (default {DEFAULT_BUCKETS}, at most {MAX_BUCKETS})."})

    @post_load
    def _to_filters(self, data, **kwargs):
        buckets = data.pop("buckets")
        return {"filters": AuditFilters(**data), "buckets": buckets}


class HistogramBucketSchema(Schema):
    start = fields.DateTime(format="iso", metadata=_ex("2026-11-30T00:00:00+00:00", "Start (UTC), included."))
    end = fields.DateTime(format="iso", metadata=_ex("2026-11-30T14:24:00+00:00", "End (UTC), excluded."))
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(),
                         metadata=_ex({"SUCCESS": 41, "FAILURE": 3, "ERROR": 1}, "Events per status."))
    total = fields.Integer(metadata=_ex(45))
    exact = fields.Boolean(metadata=_ex(True, "False: this bucket's counts are estimated."))


class HistogramSchema(Schema):
    """Events per time bucket, by status."""

    buckets = fields.List(fields.Nested(HistogramBucketSchema))
    exact = fields.Boolean(metadata=_ex(True, "False when more than AUDIT_HISTOGRAM_EXACT_LIMIT events match: "
                                              "the fuller buckets are then estimated (see `sampled_per_bucket`)."))
    start = fields.DateTime(format="iso", metadata={"description": "The range covered: the query's, or the last "
                                                                   "30 days."})
    end = fields.DateTime(format="iso")
    total = fields.Integer(metadata=_ex(45, "The sum of the buckets' totals."))
    sampled_per_bucket = fields.Integer(allow_none=True, metadata=_ex(
        None, "When not exact: how many events of a bucket were read before it was estimated."))
