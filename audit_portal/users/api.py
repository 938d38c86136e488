"""The users JSON API under /api/v1/users (admins only) and /api/v1/me. Every change goes through the
same services as the HTML pages, so it is audited the same way."""

from __future__ import annotations

from flask import abort
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from marshmallow import RAISE

from ..audit import ActionType
from ..rest import abort_invalid, documented_errors, envelope, ok, require_admin, require_login
from . import services
from .rules import NotFound, ServiceError
from .schemas import (
    PasswordResetSchema,
    StatusChangeSchema,
    UserCreateSchema,
    UserListSchema,
    UserQueryArgsSchema,
    UserSchema,
    UserUpdateSchema,
)

blp = Blueprint("Users", __name__, url_prefix="/api/v1/users",
                description="Manage user accounts (admins only). Every change is recorded in the audit log.")
me_blp = Blueprint("Me", __name__, url_prefix="/api/v1/me", description="The authenticated user.")

blp.before_request(require_admin)
me_blp.before_request(require_login)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]
UserEnvelope = envelope(UserSchema, "UserEnvelope")
UserListEnvelope = envelope(UserListSchema, "UserListEnvelope")


def _user_or_404(user_id: int):
    try:
        return services.get_user(user_id) if user_id < 2**31 else abort(404)
    except NotFound:
        abort(404, description=f"There is no user with id {user_id}.")


def _apply(action, action_type: ActionType, target_id: int | None = None):
    """Run a service call and commit; on a broken rule (recorded as refused) answer 422 naming the field."""
    try:
        return services.run_operation(current_user, action_type, target_id, action)
    except ServiceError as exc:
        abort_invalid(exc.field, exc.message)


@blp.route("/")
class UserList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 422)
    @blp.arguments(UserQueryArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, UserListEnvelope)
    def get(self, args):
        """List users

        Ordered by username. `search` matches username, email or full name.

        ```
        curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:5000/api/v1/users/?search=ali"
        ```
        """
        users, total = services.slice_users(args["search"], args["skip"], args["limit"])
        return ok({"items": users, "total": total, "skip": args["skip"], "limit": args["limit"]})

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 422)
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserEnvelope)
    def post(self, data):
        """Create a user

        ```
        curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
          -d '{"username": "carol", "email": "carol@example.com", "password": "a-long-password"}' \\
          http://127.0.0.1:5000/api/v1/users/
        ```
        """
        user = _apply(lambda: services.create_user(current_user, **data), ActionType.CREATE)
        return ok(user, "User created.")


@blp.route("/<int:user_id>")
class UserItem(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, UserEnvelope)
    def get(self, user_id: int):
        """Get a user"""
        return ok(_user_or_404(user_id))

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 404, 422)
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserEnvelope)
    def patch(self, data, user_id: int):
        """Update a user's username, email, full name, role or time zone

        The audit event carries the old and new values. The time zone only changes how the HTML pages show
        times to that user; every time in the API and in exports stays UTC.

        ```
        curl -X PATCH -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
          -d '{"timezone": "Europe/Paris"}' http://127.0.0.1:5000/api/v1/users/2
        ```
        """
        user = _user_or_404(user_id)
        return ok(_apply(lambda: services.update_user(current_user, user, **data), ActionType.UPDATE, user.id), "User updated.")

    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 422)
    @blp.response(200, UserEnvelope)
    def delete(self, user_id: int):
        """Delete a user

        Their audit events are kept (with their username).
        """
        user = _user_or_404(user_id)
        snapshot = {name: getattr(user, field.attribute or name) for name, field in UserSchema().fields.items()}
        _apply(lambda: services.delete_user(current_user, user), ActionType.DELETE, user.id)
        return ok(snapshot, "User deleted.")


@blp.route("/<int:user_id>/status")
class UserStatus(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 404, 422)
    @blp.arguments(StatusChangeSchema)
    @blp.response(200, UserEnvelope)
    def post(self, data, user_id: int):
        """Change a user's status (active, pending, suspended)"""
        user = _user_or_404(user_id)
        return ok(_apply(lambda: services.change_status(current_user, user, data["status"]),
                         ActionType.STATUS_CHANGE, user.id), "Status changed.")


@blp.route("/<int:user_id>/activate")
class UserActivate(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, UserEnvelope)
    def post(self, user_id: int):
        """Activate a user's account"""
        user = _user_or_404(user_id)
        activated = _apply(lambda: services.set_active(current_user, user, True), ActionType.ACTIVATE, user.id)
        return ok(activated, "User activated.")


@blp.route("/<int:user_id>/deactivate")
class UserDeactivate(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 422)
    @blp.response(200, UserEnvelope)
    def post(self, user_id: int):
        """Deactivate a user's account (they can no longer log in)"""
        user = _user_or_404(user_id)
        deactivated = _apply(lambda: services.set_active(current_user, user, False), ActionType.DEACTIVATE, user.id)
        return ok(deactivated, "User deactivated.")


@blp.route("/<int:user_id>/password")
class UserPassword(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 400, 401, 403, 404, 422)
    @blp.arguments(PasswordResetSchema)
    @blp.response(200, UserEnvelope)
    def post(self, data, user_id: int):
        """Reset a user's password (their sessions end; recorded as sensitive, without the password)"""
        user = _user_or_404(user_id)
        return ok(_apply(lambda: services.reset_password(current_user, user, data["password"]),
                         ActionType.PASSWORD_CHANGE, user.id), "Password reset.")


@me_blp.route("")
class Me(MethodView):
    @me_blp.doc(security=SECURITY)
    @documented_errors(me_blp, 401)
    @me_blp.response(200, UserEnvelope)
    def get(self):
        """The authenticated user

        ```
        curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/v1/me
        ```
        """
        return ok(current_user._get_current_object())
