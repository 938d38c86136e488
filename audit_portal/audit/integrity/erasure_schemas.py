"""The erasure requests' API shapes (``web/erasure_api.py``); the rules themselves live in ``erasure.py``."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from ..record.models import USERNAME_SNAPSHOT_MAX
from .models import REASON_MAX


class ErasureRequestCreateSchema(Schema):
    """Whom to erase (a user id, a username, or both: the account may be deleted) and why."""

    class Meta:
        unknown = RAISE

    user_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=2**31 - 1),
                             metadata={"description": "The person's user id.", "example": 42})
    username = fields.String(allow_none=True, validate=validate.Length(min=1, max=USERNAME_SNAPSHOT_MAX),
                             metadata={"description": "The person's username (also of a deleted account).",
                                       "example": "carol"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=REASON_MAX),
                           metadata={"description": "Why; kept with the request. Do not write the person's name.",
                                     "example": "GDPR Art. 17 request, ticket 1234"})

    @validates_schema
    def _someone(self, data, **kwargs):
        if data.get("user_id") is None and not data.get("username"):
            raise ValidationError("Give user_id or username (or both).", field_name="user_id")


class ErasureRequestSchema(Schema):
    id = fields.Integer(metadata={"example": 3})
    subject_user_id = fields.Integer(allow_none=True, metadata={"example": 42})
    subject_username = fields.String(allow_none=True, metadata={"example": "carol"})
    reason = fields.String()
    status = fields.String(metadata={"description": "pending, rejected or done.", "example": "pending"})
    requested_at = fields.DateTime(format="iso")
    requested_by = fields.String(metadata={"example": "alice"})
    decided_at = fields.DateTime(format="iso", allow_none=True)
    decided_by = fields.String(allow_none=True, metadata={"example": "bob"})
    erased_count = fields.Integer(allow_none=True, metadata={"description": "Events whose personal data was erased.",
                                                             "example": 17})
    held_count = fields.Integer(allow_none=True, metadata={"description": "Events left alone: inside a legal hold.",
                                                           "example": 0})
    held_events = fields.List(fields.Integer(), allow_none=True,
                              metadata={"description": "The held events' ids (the first 1,000)."})
