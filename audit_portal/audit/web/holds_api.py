"""Legal holds under /api/v1/audit-logs/holds (admins only): time ranges the retention purge keeps."""

from __future__ import annotations

from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from ...rest import commit_or_refuse, documented_errors, envelope, ok, require_admin
from ..integrity import holds as service
from ..integrity.schemas import HoldCreateSchema, HoldSchema

blp = Blueprint(
    "Legal holds", __name__, url_prefix="/api/v1/audit-logs/holds",
    description="Time ranges whose events the retention purge keeps, whatever their category's retention, until the "
                "hold is released. Placing and releasing a hold are audited (HOLD_CREATE, HOLD_RELEASE). Admins only.",
)
blp.before_request(require_admin)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]
ItemEnvelope = envelope(HoldSchema, "LegalHoldEnvelope")
ListEnvelope = envelope(HoldSchema(many=True), "LegalHoldListEnvelope")


@blp.route("/")
class HoldList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403)
    @blp.response(200, ListEnvelope)
    def get(self):
        """List legal holds

        The active ones first (`active: true`), then the released ones, newest first.

        ```
        curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/v1/audit-logs/holds/
        ```
        """
        return ok(service.list_holds())

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 422)
    @blp.arguments(HoldCreateSchema)
    @blp.response(201, ItemEnvelope)
    def post(self, data):
        """Place a legal hold

        `from` and `to` are ISO 8601 (a date alone: from the start of that day, and up to the end of that day,
        UTC); both ends are held. `from` after `to`, or an empty `reason`, is a 422 naming the field.

        ```
        curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
          -d '{"from": "2026-01-01", "to": "2026-03-31", "reason": "Case 2026-17"}' \\
          http://127.0.0.1:5000/api/v1/audit-logs/holds/
        ```
        """
        hold = commit_or_refuse(lambda: service.add_hold(current_user, data["starts_at"], data["ends_at"],
                                                         data["reason"]), service.HoldError)
        return ok(hold, "Legal hold placed.")


@blp.route("/<int:hold_id>/release")
class HoldRelease(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 409)
    @blp.response(200, ItemEnvelope)
    def post(self, hold_id: int):
        """Release a legal hold

        The purge may then remove its events (those past their category's retention). 404 for an unknown id, 409
        when it was already released.

        ```
        curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/v1/audit-logs/holds/3/release
        ```
        """
        return ok(commit_or_refuse(lambda: service.release_hold(current_user, hold_id), service.HoldError),
                  "Legal hold released.")
