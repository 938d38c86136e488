"""End to end: a real session through the UI leaves exactly the expected audit trail, with the right
fields, and no trace of any password anywhere in the audit table."""

from __future__ import annotations

import json

from sqlalchemy import text

from audit_portal.audit.record.models import AuditLog
from audit_portal.extensions import db
from tests.conftest import PASSWORD, AuthActions, form_post

NEW_PASSWORD = "Canary-NewPass-7f3a9c"
IP = "203.0.113.20"
AGENT = "IntegrationBrowser/1.0 (X11; Linux)"


def _all_cells_as_text(app) -> list[str]:
    """Every column of every row of audit_logs, as text."""
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM audit_logs")).mappings().all()
        db.session.remove()
    return [json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
            for row in rows for value in row.values()]


def test_a_session_leaves_exactly_the_expected_trail(app, client, make_user, audit_rows):
    admin_id = make_user("admin", role="admin")
    bob_id = make_user("bob")
    client.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=AGENT)

    assert AuthActions(client).login("admin").status_code == 302
    page = f"/admin/users/{bob_id}"
    assert form_post(client, f"{page}/status", {"status": "suspended"}, token_url=page).status_code == 302
    response = form_post(client, "/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                    "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    # Careless code that puts the submitted password into an exception message.
    assert client.post("/_test/boom/secret", data={"password": NEW_PASSWORD}).status_code == 500

    rows = audit_rows()
    domain = [row for row in rows if row.action_type != "REQUEST"]
    assert [row.action_type for row in domain] == [
        "CREATE", "CREATE", "LOGIN", "STATUS_CHANGE", "PASSWORD_CHANGE", "EXCEPTION_RAISED"]
    created_admin, created_bob, login, status_change, password_change, error = domain

    assert (created_admin.resource_id, created_bob.resource_id) == (str(admin_id), str(bob_id))
    assert created_bob.event_metadata["new"]["username"] == "bob" and created_bob.ip_address is None

    for row in (login, status_change, password_change, error):
        assert (row.user_id, row.username, row.ip_address, row.user_agent) == (admin_id, "admin", IP, AGENT)
        assert row.request_id

    assert (login.status, login.resource_type, login.category) == ("SUCCESS", "SESSION", "authentication")

    assert (status_change.resource_type, status_change.resource_id) == ("USER", str(bob_id))
    assert status_change.event_metadata == {"old": {"status": "active"}, "new": {"status": "suspended"}}
    assert status_change.description == "admin changed the status of bob from active to suspended"

    assert (password_change.resource_id, password_change.is_sensitive) == (str(admin_id), True)
    assert password_change.category == "security" and password_change.status == "SUCCESS"

    assert (error.error_type, error.severity, error.status, error.status_code) == ("ValueError", "ERROR", "ERROR", 500)
    assert error.stack_trace and error.fingerprint

    requests = [(row.http_method, row.path, row.status_code) for row in rows if row.action_type == "REQUEST"]
    assert requests == [
        ("GET", "/auth/login", 200), ("POST", "/auth/login", 302),
        ("GET", page, 200), ("POST", f"{page}/status", 302),
        ("GET", "/auth/password", 200), ("POST", "/auth/password", 302),
        ("POST", "/_test/boom/secret", 500),
    ]
    by_path = {(row.http_method, row.path): row for row in rows if row.action_type == "REQUEST"}
    assert by_path[("POST", "/auth/login")].request_id == login.request_id
    assert by_path[("POST", f"{page}/status")].request_id == status_change.request_id
    assert by_path[("POST", "/_test/boom/secret")].request_id == error.request_id
    assert all(row.ip_address == IP and row.user_agent == AGENT for row in rows if row.action_type == "REQUEST")

    cells = _all_cells_as_text(app)
    assert len(cells) == len(rows) * len(AuditLog.__table__.columns)  # every column of every row was scanned
    for secret in (NEW_PASSWORD, PASSWORD):
        assert not [cell for cell in cells if secret in cell], f"{secret!r} is in the audit log"


def test_a_failed_password_change_is_recorded_without_the_attempt(app, client, admin_id, audit_rows):
    client.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=AGENT)
    AuthActions(client).login("admin")
    response = form_post(client, "/auth/password", {"current_password": "Wrong-Guess-123", "new_password": NEW_PASSWORD,
                                                    "confirm": NEW_PASSWORD})
    assert response.status_code == 400
    [attempt] = audit_rows(action_type="PASSWORD_CHANGE")
    assert (attempt.status, attempt.is_sensitive, attempt.user_id, attempt.ip_address) == ("FAILURE", True, admin_id, IP)
    cells = _all_cells_as_text(app)
    for secret in (NEW_PASSWORD, "Wrong-Guess-123", PASSWORD):
        assert not [cell for cell in cells if secret in cell]
