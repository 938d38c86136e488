"""The stream destinations JSON API under /api/v1/streams (admins only)."""

from __future__ import annotations

from types import SimpleNamespace

from flask import abort
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from ...rest import commit_or_refuse, documented_errors, envelope, ok, require_admin
from ..streams import service
from ..streams.schemas import StreamCreatedSchema, StreamCreateSchema, StreamSchema, StreamUpdateSchema

blp = Blueprint(
    "Streams", __name__, url_prefix="/api/v1/streams",
    description="Send the audit trail to a SIEM: syslog (RFC 5424), signed webhooks or files, as json, ecs or cef. "
                "Every sealed event is delivered in the chain's order, at least once (docs/streams.md). Admins only.",
)
blp.before_request(require_admin)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]
ItemEnvelope = envelope(StreamSchema, "StreamEnvelope")
ListEnvelope = envelope(StreamSchema(many=True), "StreamListEnvelope")
CreatedEnvelope = envelope(StreamCreatedSchema, "StreamCreatedEnvelope")


def _destination(stream_id: int):
    try:
        return service.get_destination(stream_id)
    except service.NotFound as exc:
        abort(404, description=str(exc))


def _commit(operation):
    return commit_or_refuse(operation, service.StreamError)


@blp.route("/")
class StreamList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403)
    @blp.response(200, ListEnvelope)
    def get(self):
        """List destinations

        With each one's state (active, paused, failing), lag and last error.
        """
        return ok(service.list_destinations())

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 422)
    @blp.arguments(StreamCreateSchema)
    @blp.response(201, CreatedEnvelope)
    def post(self, data):
        """Add a destination

        A webhook's signing secret is in this response only. `start`: `now` (default) or `beginning`.

        ```
        curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
          -d '{"name": "siem", "kind": "syslog", "url": "tcp://127.0.0.1:5514", "format": "cef"}' \\
          http://127.0.0.1:5000/api/v1/streams/
        ```
        """
        destination, _secret = _commit(lambda: service.create_destination(current_user, data))
        return ok(destination, "Destination added.")


@blp.route("/<int:stream_id>")
class StreamItem(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, ItemEnvelope)
    def get(self, stream_id: int):
        """Get a destination"""
        return ok(_destination(stream_id))

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 404, 422)
    @blp.arguments(StreamUpdateSchema)
    @blp.response(200, ItemEnvelope)
    def patch(self, data, stream_id: int):
        """Change a destination (name, url or path, format, filters, headers, CA file)"""
        destination = _destination(stream_id)
        return ok(_commit(lambda: service.update_destination(current_user, destination, data)), "Destination changed.")

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, ItemEnvelope)
    def delete(self, stream_id: int):
        """Remove a destination"""
        destination = _destination(stream_id)
        shown = SimpleNamespace(**{name: getattr(destination, name) for name in StreamSchema().fields})
        _commit(lambda: service.delete_destination(current_user, destination))
        return ok(shown, "Destination removed.")


@blp.route("/<int:stream_id>/pause")
class StreamPause(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, ItemEnvelope)
    def post(self, stream_id: int):
        """Pause a destination (nothing is sent; its events wait, unless a retention purge removes them first)"""
        destination = _destination(stream_id)
        return ok(_commit(lambda: service.set_paused(current_user, destination, True)), "Destination paused.")


@blp.route("/<int:stream_id>/resume")
class StreamResume(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, ItemEnvelope)
    def post(self, stream_id: int):
        """Resume a destination (delivery goes on from where it stopped)"""
        destination = _destination(stream_id)
        return ok(_commit(lambda: service.set_paused(current_user, destination, False)), "Destination resumed.")


@blp.route("/<int:stream_id>/test")
class StreamTest(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 422)
    @blp.response(200, ItemEnvelope)
    def post(self, stream_id: int):
        """Send one test message now (422 naming url or path when the receiver does not take it)"""
        destination = _destination(stream_id)
        _commit(lambda: service.send_test(current_user, destination))
        return ok(destination, "Test message sent.")


@blp.route("/<int:stream_id>/rotate-secret")
class StreamRotateSecret(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 422)
    @blp.response(200, CreatedEnvelope)
    def post(self, stream_id: int):
        """Give a webhook a new signing secret (shown only in this response; the old one stops at once)"""
        destination = _destination(stream_id)
        _commit(lambda: service.rotate_secret(current_user, destination))
        return ok(destination, "Secret rotated.")
