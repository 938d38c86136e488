"""Saved views under /api/v1/saved-views (admins only): each admin's own views and the shared ones."""

from __future__ import annotations

from types import SimpleNamespace

from flask import abort
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from ...rest import commit_or_refuse, documented_errors, envelope, ok, require_admin
from ..saved import service
from ..saved.schemas import SavedViewCreateSchema, SavedViewSchema, SavedViewUpdateSchema

blp = Blueprint(
    "Saved views", __name__, url_prefix="/api/v1/saved-views",
    description="Named queries and filters of the viewer or the error dashboard: personal, or shared with every "
                "admin (changed by their owner only); one default per page, opened when it is visited without "
                "filters. Another admin's personal view does not exist for you (404). Admins only.",
)
blp.before_request(require_admin)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]
ItemEnvelope = envelope(SavedViewSchema, "SavedViewEnvelope")
ListEnvelope = envelope(SavedViewSchema(many=True), "SavedViewListEnvelope")


def _view(view_id: int):
    try:
        return service.get_view(current_user.id, view_id)
    except service.NotFound as exc:
        abort(404, description=str(exc))


def _commit(operation):
    return commit_or_refuse(operation, service.ViewError)


@blp.route("/")
class SavedViewList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403)
    @blp.response(200, ListEnvelope)
    def get(self):
        """List your views and the shared ones"""
        return ok(service.list_views(current_user.id))

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 422)
    @blp.arguments(SavedViewCreateSchema)
    @blp.response(201, ItemEnvelope)
    def post(self, data):
        """Save a view

        ```
        curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
          -d '{"name": "Failed logins outside the VPN", "q": "action:login_failed -ip:10.0.0.0/8", "shared": true}' \\
          http://127.0.0.1:5000/api/v1/saved-views/
        ```
        """
        return ok(_commit(lambda: service.create_view(current_user.id, data)), "View saved.")


@blp.route("/<int:view_id>")
class SavedViewItem(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, ItemEnvelope)
    def get(self, view_id: int):
        """Get a view"""
        return ok(_view(view_id))

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 404, 422)
    @blp.arguments(SavedViewUpdateSchema)
    @blp.response(200, ItemEnvelope)
    def patch(self, data, view_id: int):
        """Change one of your views (403 for another admin's shared view)"""
        view = _view(view_id)
        return ok(_commit(lambda: service.update_view(current_user.id, view, data)), "View changed.")

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, ItemEnvelope)
    def delete(self, view_id: int):
        """Remove one of your views (403 for another admin's shared view)"""
        view = _view(view_id)
        shown = SimpleNamespace(**{name: getattr(view, name) for name in SavedViewSchema().fields})
        _commit(lambda: service.delete_view(current_user.id, view))
        return ok(shown, "View removed.")
