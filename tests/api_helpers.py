"""Helpers for API tests: tokens made through the same service as `flask tokens create`."""

from audit_portal.extensions import db
from audit_portal.users.models import User
from audit_portal.users.tokens import create_token


def make_token(app, user_id: int, name: str = "test") -> str:
    with app.app_context():
        _, raw = create_token(None, db.session.get(User, user_id), name)
        db.session.commit()
        return raw


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
