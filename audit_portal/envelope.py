"""The JSON error envelope's schema (documentation only; ``errors.py`` builds the responses)."""

from marshmallow import Schema, fields


class ErrorEnvelopeSchema(Schema):
    """Every JSON error: ``{"success": false, "message", "code", "status", "errors"}``."""

    success = fields.Boolean(metadata={"example": False})
    message = fields.String(metadata={"example": "Invalid request: status: Unknown value 'x'; must be one of: "
                                                 "SUCCESS, FAILURE, ERROR."})
    code = fields.Integer(metadata={"example": 422})
    status = fields.String(metadata={"example": "Unprocessable Entity"})
    errors = fields.Dict(metadata={"example": {"status": ["Unknown value 'x'; must be one of: SUCCESS, FAILURE, ERROR."]}})
