"""Erasure requests under /api/v1/erasure-requests (admins only): ask, approve (a second admin), reject."""

from __future__ import annotations

from flask import abort
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from ...rest import commit_or_refuse, documented_errors, envelope, ok, require_admin
from ..integrity import erasure
from ..integrity.erasure_schemas import ErasureRequestCreateSchema, ErasureRequestSchema

blp = Blueprint(
    "Erasure requests", __name__, url_prefix="/api/v1/erasure-requests",
    description="Erase a person's personal data from the audit trail, with four eyes: one admin asks, another approves "
                "(it is then carried out, as an ERASURE event) or rejects it. Erased values read \"[erased]\"; the "
                "chains keep commitments of them, so verification still passes. Events inside a legal hold are left "
                "as they are and reported. Admins only (docs/compliance.md, Erasure).",
)
blp.before_request(require_admin)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]
ItemEnvelope = envelope(ErasureRequestSchema, "ErasureRequestEnvelope")
ListEnvelope = envelope(ErasureRequestSchema(many=True), "ErasureRequestListEnvelope")


def _me() -> erasure.Admin:
    return erasure.Admin(current_user.id, current_user.username)


def _commit(operation):
    try:
        return commit_or_refuse(operation, erasure.ErasureError)
    except erasure.NotFound as exc:
        abort(404, description=str(exc))


@blp.route("/")
class ErasureRequestList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403)
    @blp.response(200, ListEnvelope)
    def get(self):
        """List erasure requests (newest first)"""
        return ok(erasure.list_requests())

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 409, 422)
    @blp.arguments(ErasureRequestCreateSchema)
    @blp.response(201, ItemEnvelope)
    def post(self, data):
        """Ask for an erasure

        Refused (422) when no event names the person, 409 when a request for them is pending already.

        ```
        curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
          -d '{"user_id": 42, "reason": "GDPR Art. 17 request, ticket 1234"}' \\
          http://127.0.0.1:5000/api/v1/erasure-requests/
        ```
        """
        return ok(_commit(lambda: erasure.request_erasure(_me(), data["reason"], user_id=data.get("user_id"),
                                                          username=data.get("username"))),
                  "Erasure requested: another admin must approve it.")


@blp.route("/<int:request_id>/approve")
class ErasureRequestApprove(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 409)
    @blp.response(200, ItemEnvelope)
    def post(self, request_id: int):
        """Approve a request and carry out the erasure

        By an admin other than the requester (403 for the requester); 409 when it is not pending.

        ```
        curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/v1/erasure-requests/3/approve
        ```
        """
        return ok(_commit(lambda: erasure.approve_erasure(request_id, _me())), "Erasure carried out.")


@blp.route("/<int:request_id>/reject")
class ErasureRequestReject(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 409)
    @blp.response(200, ItemEnvelope)
    def post(self, request_id: int):
        """Reject a request (nothing is erased)"""
        return ok(_commit(lambda: erasure.reject_erasure(request_id, _me())), "Erasure request rejected.")
