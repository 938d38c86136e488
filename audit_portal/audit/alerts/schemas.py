"""The input and output of alerts and alert rules: one set of rules for the API and the pages."""

from __future__ import annotations

import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from ...params import QueryArgsSchema
from ..read.fields import CaseInsensitiveEnum, StrictBoolean
from ..read.schemas import AuditLogFilterSchema
from .models import NAME_MAX, AlertSeverity, AlertState, GroupBy

NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
MAX_WINDOW_S = 30 * 24 * 3600
#: Filters a rule may not set: a rule counts over its own window.
_WINDOW_FILTERS = ("date_from", "date_to")


class _RuleFields(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=[validate.Length(min=1, max=NAME_MAX),
                                   validate.Regexp(NAME_RE, error="Letters, digits, '.', '_' and '-' only.")],
                         metadata={"example": "many_exports"})
    enabled = StrictBoolean(metadata={"example": True})
    filters = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata={"description": "The list API's filter parameters (not date_from/date_to: the "
                                                   "window decides), e.g. {\"action_type\": \"EXPORT\"}."})
    group_by = CaseInsensitiveEnum(GroupBy, allow_none=True, metadata={
        "enum": [*GroupBy.values(), None],  # null is a value here: no grouping
        "description": "ip_address, user_id, username, action_type or fingerprint: one alert per value; null: one alert."})
    threshold = fields.Integer(strict=True,
                               validate=validate.Range(min=1, max=10_000_000, error="Must be from 1 to 10,000,000."),
                               metadata={"description": "The count (at least) that opens an alert.", "example": 5})
    window_seconds = fields.Integer(strict=True, validate=validate.Range(
        min=1, max=MAX_WINDOW_S, error="Must be from 1 second to 30 days (2592000)."),
        metadata={"description": "The window the count is taken over.", "example": 600})
    severity = CaseInsensitiveEnum(AlertSeverity, metadata={"description": "WARNING, ERROR or CRITICAL."})
    parameter = fields.Integer(strict=True, validate=validate.Range(min=1, max=3650),
                               metadata={"description": "Built-in rules with one: error_regression's days of silence."})

    @validates("filters")
    def _filters(self, value, **kwargs):
        dated = [name for name in _WINDOW_FILTERS if name in value]
        if dated:
            raise ValidationError(f"{', '.join(dated)}: a rule counts over its window_seconds, not a date range.")
        try:
            AuditLogFilterSchema().load(value)
        except ValidationError as exc:
            raise ValidationError({key: messages for key, messages in exc.messages.items()}) from None


class AlertRuleCreateSchema(_RuleFields):
    """A custom rule (only built-in rules take a ``parameter``)."""

    class Meta:
        unknown = RAISE
        exclude = ("parameter",)

    name = fields.String(required=True, validate=_RuleFields._declared_fields["name"].validators,
                         metadata={"example": "many_exports"})
    threshold = fields.Integer(required=True, strict=True,
                               validate=_RuleFields._declared_fields["threshold"].validators,
                               metadata={"example": 5})
    window_seconds = fields.Integer(required=True, strict=True,
                                    validate=_RuleFields._declared_fields["window_seconds"].validators,
                                    metadata={"example": 600})
    severity = CaseInsensitiveEnum(AlertSeverity, load_default=AlertSeverity.WARNING.value)


class AlertRuleUpdateSchema(_RuleFields):
    """Changes to a rule (a built-in rule's name, filters and grouping stay)."""


class AlertRuleSchema(Schema):
    id = fields.Integer(metadata={"example": 1})
    name = fields.String(metadata={"example": "brute_force_ip"})
    builtin = fields.Boolean(metadata={"example": True})
    enabled = fields.Boolean(metadata={"example": True})
    filters = fields.Dict(metadata={"example": {}})
    group_by = fields.String(allow_none=True, metadata={"example": "ip_address"})
    threshold = fields.Integer(metadata={"example": 20})
    window_seconds = fields.Integer(metadata={"example": 300})
    severity = fields.String(metadata={"example": "ERROR"})
    parameter = fields.Integer(allow_none=True, metadata={"example": None})


class AlertSchema(Schema):
    id = fields.Integer(metadata={"example": 7})
    rule = fields.Function(lambda alert: alert.rule.name, metadata={"example": "brute_force_ip"})
    state = fields.String(metadata={"description": "open, acknowledged or resolved.", "example": "open"})
    severity = fields.String(metadata={"example": "ERROR"})
    group = fields.String(allow_none=True, metadata={"description": "The value grouped by, or null.",
                                                     "example": "203.0.113.24"})
    count = fields.Integer(metadata={"description": "Matching events since the alert's window began.", "example": 330})
    first_seen = fields.DateTime(format="iso")
    last_seen = fields.DateTime(format="iso")
    acknowledged_by = fields.String(allow_none=True)
    events_url = fields.String(metadata={"description": "The viewer filtered to the alert's events.",
                                         "example": "/admin/audit-logs/?ip_address=203.0.113.24"})


class AlertQueryArgsSchema(QueryArgsSchema):
    state = CaseInsensitiveEnum(AlertState, metadata={"description": "open, acknowledged or resolved."})
    rule = fields.String(validate=[validate.Length(min=1, max=NAME_MAX),
                                   validate.Regexp(NAME_RE, error="Letters, digits, '.', '_' and '-' only.")],
                         metadata={"description": "A rule's name."})
