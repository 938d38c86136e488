"""The input and output of saved views."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from ..read.fields import CaseInsensitiveEnum, StrictBoolean, no_nul, valid_query
from ..read.schemas import AuditLogFilterSchema
from ..read.search import MAX_QUERY
from .models import NAME_MAX, ViewPage


def _printable(value: str) -> None:
    if not value.strip() or not value.isprintable():
        raise ValidationError("Must hold visible characters, and no line breaks or control characters.")


class _ViewFields(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=[validate.Length(min=1, max=NAME_MAX), _printable],
                         metadata={"example": "Failed logins outside the VPN"})
    q = fields.String(allow_none=True, validate=[no_nul, validate.Length(min=1, max=MAX_QUERY), valid_query],
                      metadata={"description": "A search query (README, the search language).",
                                "example": "action:login_failed -ip:10.0.0.0/8"})
    filters = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata={"description": "The list's other filter parameters, e.g. {\"status\": \"FAILURE\"}.",
                                    "example": {}})
    page = CaseInsensitiveEnum(ViewPage, metadata={"description": "viewer or errors."})
    shared = StrictBoolean(metadata={"description": "Shared with every admin (changed by its owner only).",
                                     "example": False})
    is_default = StrictBoolean(metadata={"description": "Opened when its owner visits the page without filters.",
                                         "example": False})

    @validates("filters")
    def _filters(self, value, **kwargs):
        if "q" in value:
            raise ValidationError("Give the query as q, not among the filters.")
        try:
            AuditLogFilterSchema().load(value)
        except ValidationError as exc:
            raise ValidationError({key: messages for key, messages in exc.messages.items()}) from None


class SavedViewCreateSchema(_ViewFields):
    name = fields.String(required=True, validate=_ViewFields._declared_fields["name"].validators,
                         metadata={"example": "Failed logins outside the VPN"})
    page = CaseInsensitiveEnum(ViewPage, load_default=ViewPage.VIEWER.value, metadata={"description": "viewer or errors."})


class SavedViewUpdateSchema(_ViewFields):
    """Changes to a view (its owner's only)."""


class SavedViewSchema(Schema):
    id = fields.Integer(metadata={"example": 3})
    name = fields.String(metadata={"example": "Failed logins outside the VPN"})
    q = fields.String(allow_none=True, metadata={"example": "action:login_failed -ip:10.0.0.0/8"})
    filters = fields.Dict(metadata={"example": {}})
    page = fields.String(metadata={"example": "viewer"})
    shared = fields.Boolean(metadata={"example": False})
    is_default = fields.Boolean(metadata={"example": False})
    owner_id = fields.Integer(metadata={"example": 1})
    url = fields.String(metadata={"description": "The page with the view's query and filters.",
                                  "example": "/admin/audit-logs/?q=action%3Alogin_failed"})
