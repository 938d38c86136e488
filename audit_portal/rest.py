"""What every JSON API resource shares: the response envelope, authentication and the docs page."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, g, render_template, request
from flask_login import current_user
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from .envelope import ErrorEnvelopeSchema
from .extensions import api, csrf, db
from .params import repeated_parameters

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
BEARER_HELP = "Send 'Authorization: Bearer <token>' (create one with 'flask tokens create') or log in."


def ok(data=None, message: str | None = None) -> dict:
    """The success envelope."""
    return {"success": True, "message": message, "data": data}


_ENVELOPES: dict[str, type[Schema]] = {}


def envelope(data_schema: type[Schema] | Schema | fields.Field, name: str) -> type[Schema]:
    """A response schema ``{"success", "message", "data": <data_schema>}`` (cached per name for OpenAPI)."""
    if name not in _ENVELOPES:
        data_field = data_schema if isinstance(data_schema, fields.Field) else fields.Nested(data_schema)
        _ENVELOPES[name] = Schema.from_dict(
            {
                "success": fields.Boolean(metadata={"example": True}),
                "message": fields.String(allow_none=True, metadata={"example": None}),
                "data": data_field,
            },
            name=name,
        )
    return _ENVELOPES[name]


#: What each documented error status means; every one answers the error envelope.
ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "Not authenticated (no credentials, or an invalid or revoked token)",
    403: "Not an admin",
    404: "No such object",
    409: "The object's state refuses it (e.g. acknowledging a resolved alert)",
    422: "A parameter or a field of the body is not valid (the envelope's `errors` names it)",
}


def documented_errors(blp, *codes: int):
    """Document the error envelope for each of ``codes`` on an endpoint of ``blp``."""

    def decorate(view):
        for code in codes:
            view = blp.alt_response(code, schema=ErrorEnvelopeSchema, description=ERROR_DESCRIPTIONS[code])(view)
        return view

    return decorate


def commit_or_refuse(operation, refusal: type[Exception]):
    """Run a service call and commit it; a ``refusal`` (with ``field``, ``message`` and optionally ``code``) is
    rolled back and answered with the error envelope naming the field (422 unless it says otherwise)."""
    try:
        result = operation()
    except refusal as exc:
        db.session.rollback()
        abort_invalid(exc.field, exc.message, getattr(exc, "code", 422))
    db.session.commit()
    return result


def abort_invalid(field: str, message: str, code: int = 422):
    """Answer the error envelope with ``message`` and ``errors={field: [message]}``."""
    try:
        abort(code, description=message)
    except HTTPException as exc:
        exc.data = {"messages": {"json": {field: [message]}}}
        raise


def _authenticate() -> None:
    """401 without a valid session or token; CSRF for unsafe methods when the session cookie is used."""
    if not current_user.is_authenticated:
        if g.get("token_rejected"):
            abort(401, description="The API token is invalid or revoked. " + BEARER_HELP)
        abort(401, description="Authentication required. " + BEARER_HELP)
    if g.get("auth_method") != "token" and request.method in UNSAFE_METHODS:
        csrf.protect()  # browser session: the X-CSRFToken header is required


def _reject_repeated_parameters() -> None:
    for name, messages in repeated_parameters(request.args).items():
        abort_invalid(name, messages[0])


def require_login() -> None:
    """``before_request`` guard for API blueprints open to every authenticated user."""
    _authenticate()
    _reject_repeated_parameters()


def require_admin() -> None:
    """``before_request`` guard for admin-only API blueprints: 401 when unauthenticated, 403 (audited)
    when not an admin. It runs before any argument is parsed, so nothing is revealed to others."""
    _authenticate()
    if not current_user.is_admin:
        abort(403, description="This endpoint is for administrators only.")
    _reject_repeated_parameters()


docs_bp = Blueprint("api_docs", __name__)


@docs_bp.get("/api/docs")
def swagger_ui():
    """Swagger UI from vendored assets; reading the documentation needs no login."""
    return render_template("api/docs.html")


def init_app(app: Flask) -> None:
    """Bind flask-smorest and register the docs page; features then add their blueprints (``register``)."""
    api.init_app(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer",
                                                        "description": BEARER_HELP})
    api.spec.components.security_scheme("sessionCookie", {"type": "apiKey", "in": "cookie", "name": "session"})
    app.register_blueprint(docs_bp)


def register(*blueprints) -> None:
    """Add a feature's API blueprints (after ``init_app``)."""
    for blp in blueprints:
        csrf.exempt(blp)  # CSRF is enforced in _authenticate for session-authenticated calls only
        api.register_blueprint(blp)
