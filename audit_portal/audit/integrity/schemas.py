"""marshmallow schemas of the integrity tables: legal holds (created through the API, the page and the CLI)."""

from __future__ import annotations

from datetime import timedelta

from marshmallow import RAISE, Schema, fields, validate

from ..read.fields import DateOrDateTime, no_nul
from .models import REASON_MAX


class HoldEnd(DateOrDateTime):
    """The hold's last moment, included: a date alone means up to the end of that day (UTC)."""

    def __init__(self, **kwargs):
        super().__init__(end=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        return moment - timedelta(microseconds=1) if len(str(value).strip()) == 10 else moment


class HoldCreateSchema(Schema):
    """A new legal hold (its rules are the service's: ``integrity/holds.py``)."""

    class Meta:
        unknown = RAISE

    starts_at = DateOrDateTime(data_key="from", required=True, metadata={
        "description": "The first moment held (ISO 8601; a date alone: from the start of that day, UTC).",
        "example": "2026-01-01"})
    ends_at = HoldEnd(data_key="to", required=True, metadata={
        "description": "The last moment held (ISO 8601; a date alone: up to the end of that day, UTC).",
        "example": "2026-03-31"})
    reason = fields.String(required=True, validate=[no_nul, validate.Length(max=REASON_MAX)],
                           metadata={"description": "Why the events are held.", "example": "Case 2026-17"})


class HoldSchema(Schema):
    """A legal hold."""

    id = fields.Integer()
    starts_at = fields.DateTime(data_key="from")
    ends_at = fields.DateTime(data_key="to")
    reason = fields.String()
    active = fields.Function(lambda hold: hold.released_at is None, metadata={"type": "boolean"})
    created_at = fields.DateTime()
    created_by = fields.String(allow_none=True)
    released_at = fields.DateTime(allow_none=True)
    released_by = fields.String(allow_none=True)
