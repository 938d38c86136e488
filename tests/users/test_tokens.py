from audit_portal.extensions import db
from audit_portal.users.models import ApiToken
from tests.api_helpers import bearer, make_token
from tests.conftest import csrf_token


def test_cli_creates_a_token_that_works_and_is_stored_hashed(app, runner, admin_id, client, audit_rows):
    result = runner.invoke(args=["tokens", "create", "--username", "admin", "--name", "nightly export"])
    assert result.exit_code == 0, result.output
    raw = result.stdout.strip().splitlines()[0]
    assert raw.startswith("ap_") and len(raw) > 40
    response = client.get("/api/v1/me", headers=bearer(raw))
    assert response.status_code == 200
    assert response.json["data"]["username"] == "admin"
    with app.app_context():
        token = db.session.scalars(db.select(ApiToken)).one()
        assert raw not in (token.token_hash, token.prefix)
        assert token.last_used_at is not None
    [created] = audit_rows(action_type="TOKEN_CREATE")
    assert created.is_sensitive and raw not in str(created.event_metadata) and raw not in created.description


def test_cli_rejects_unknown_user(runner):
    result = runner.invoke(args=["tokens", "create", "--username", "ghost"])
    assert result.exit_code == 2
    assert "No user called 'ghost'" in result.output


def test_bad_and_revoked_tokens_get_401_and_are_audited(app, client, admin_id, admin_client, audit_rows):
    raw = make_token(app, admin_id)
    anonymous = app.test_client()
    assert anonymous.get("/api/v1/me", headers=bearer("ap_not-a-real-token")).status_code == 401
    with app.app_context():
        token_id = db.session.scalars(db.select(ApiToken.id)).one()
    page = f"/admin/users/{admin_id}"
    response = admin_client.post(f"{page}/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(admin_client, page)})
    assert response.status_code == 302
    response = anonymous.get("/api/v1/me", headers=bearer(raw))
    assert response.status_code == 401
    assert "invalid or revoked" in response.json["message"]
    reasons = [row.event_metadata["reason"] for row in audit_rows(action_type="TOKEN_AUTH_FAILED")]
    assert reasons == ["unknown token", "revoked token"]
    assert len(audit_rows(action_type="TOKEN_REVOKE")) == 1


def test_token_of_a_deactivated_user_stops_working(app, make_user, admin_client):
    bob = make_user("bob")
    raw = make_token(app, bob)
    assert app.test_client().get("/api/v1/me", headers=bearer(raw)).status_code == 200
    page = f"/admin/users/{bob}"
    admin_client.post(f"{page}/deactivate", data={"csrf_token": csrf_token(admin_client, page)})
    assert app.test_client().get("/api/v1/me", headers=bearer(raw)).status_code == 401


def test_ui_shows_a_new_token_once(admin_client, admin_id):
    page = f"/admin/users/{admin_id}"
    response = admin_client.post(f"{page}/tokens", data={"name": "ci", "csrf_token": csrf_token(admin_client, page)})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "cannot be shown again" in body
    raw = body.split('data-testid="new-token">')[1].split("<")[0]
    assert raw.startswith("ap_")
    assert raw not in admin_client.get(page).get_data(as_text=True)
    assert "ci" in admin_client.get(page).get_data(as_text=True)


def test_every_event_of_a_token_request_names_the_token(app, client, admin_id, audit_rows):
    raw = make_token(app, admin_id, "nightly")
    with app.app_context():
        token = db.session.scalars(db.select(ApiToken)).one()
        token_id, prefix = token.id, token.prefix
    client.get("/api/v1/audit-logs/", headers=bearer(raw))
    client.post(f"/api/v1/users/{admin_id}/status", json={"status": "active"}, headers=bearer(raw))
    [request_event] = audit_rows(action_type="REQUEST", http_method="GET")
    assert request_event.username == "admin"
    assert request_event.event_metadata["client"] == {"kind": "api-token", "id": token_id, "prefix": prefix}
