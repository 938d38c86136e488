"""The users API: the same services as the HTML pages, so every change is audited the same way."""

import json

import pytest

from tests.api_helpers import bearer, make_token
from tests.conftest import PASSWORD, csrf_token


@pytest.fixture
def admin_token(app, admin_id):
    return make_token(app, admin_id)


@pytest.fixture
def bob_id(make_user):
    return make_user("bob")


def test_me_for_any_authenticated_user(app, client, bob_id):
    assert client.get("/api/v1/me").status_code == 401
    body = client.get("/api/v1/me", headers=bearer(make_token(app, bob_id))).json
    assert body["success"] is True and body["data"]["username"] == "bob" and body["data"]["role"] == "user"
    assert "password" not in str(body) and "hash" not in str(body)


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/users/"), ("post", "/api/v1/users/"), ("get", "/api/v1/users/{id}"),
    ("patch", "/api/v1/users/{id}"), ("delete", "/api/v1/users/{id}"), ("post", "/api/v1/users/{id}/status"),
    ("post", "/api/v1/users/{id}/activate"), ("post", "/api/v1/users/{id}/deactivate"),
    ("post", "/api/v1/users/{id}/password"),
])
def test_authorization_matrix(app, client, bob_id, admin_token, method, path):
    url = path.format(id=bob_id)
    assert getattr(client, method)(url, json={}).status_code == 401
    assert getattr(client, method)(url, json={}, headers=bearer(make_token(app, bob_id))).status_code == 403
    assert getattr(client, method)(url, json={}, headers=bearer(admin_token)).status_code in (200, 201, 422)


def test_create_update_status_activation_password_delete_are_audited(client, admin_token, audit_rows):
    h = bearer(admin_token)
    created = client.post("/api/v1/users/", headers=h, json={
        "username": "carol", "email": "carol@example.com", "password": "secret-long-pass-1"})
    assert created.status_code == 201, created.json
    uid = created.json["data"]["id"]
    patched = client.patch(f"/api/v1/users/{uid}", headers=h, json={"full_name": "Carol C", "role": "ADMIN"})
    assert patched.status_code == 200 and patched.json["data"]["role"] == "admin"
    status = client.post(f"/api/v1/users/{uid}/status", headers=h, json={"status": "suspended"})
    assert status.json["data"]["status"] == "suspended"
    assert client.post(f"/api/v1/users/{uid}/deactivate", headers=h).json["data"]["is_active"] is False
    assert client.post(f"/api/v1/users/{uid}/activate", headers=h).json["data"]["is_active"] is True
    assert client.post(f"/api/v1/users/{uid}/password", headers=h, json={"password": "another-long-pass-2"}).status_code == 200
    assert client.delete(f"/api/v1/users/{uid}", headers=h).json["data"]["username"] == "carol"
    assert client.get(f"/api/v1/users/{uid}", headers=h).status_code == 404
    actions = [r.action_type for r in audit_rows(resource_type="USER", resource_id=str(uid)) if r.action_type != "REQUEST"]
    assert actions == ["CREATE", "UPDATE", "ROLE_CHANGE", "STATUS_CHANGE", "DEACTIVATE", "ACTIVATE", "PASSWORD_CHANGE",
                       "DELETE"]
    update = audit_rows(action_type="UPDATE")[0]
    assert update.event_metadata["old"] == {"full_name": ""} and update.event_metadata["new"] == {"full_name": "Carol C"}
    assert all(r.username == "admin" for r in audit_rows(resource_type="USER", resource_id=str(uid)))


@pytest.mark.parametrize("payload, field", [
    ({"username": "", "email": "x@example.com", "password": "long-enough-pass"}, "username"),
    ({"username": "dave", "email": "not-an-email", "password": "long-enough-pass"}, "email"),
    ({"username": "dave", "email": "d@example.com", "password": "short"}, "password"),
    ({"username": "bob", "email": "b2@example.com", "password": "long-enough-pass"}, "username"),
    ({"username": "BOB", "email": "b2@example.com", "password": "long-enough-pass"}, "username"),
    ({"username": "dave", "email": "bob@example.com", "password": "long-enough-pass"}, "email"),
    ({"username": "dave", "email": "d@example.com", "password": "long-enough-pass", "role": "root"}, "role"),
    ({"username": "dave", "email": "d@example.com", "password": "long-enough-pass", "status": "zombie"}, "status"),
    ({"username": "dave", "email": "d@example.com", "password": "long-enough-pass", "is_admin": True}, "is_admin"),
    ({"username": "x" * 65, "email": "d@example.com", "password": "long-enough-pass"}, "username"),
    ({"username": 42, "email": "d@example.com", "password": "long-enough-pass"}, "username"),
    ({"email": "d@example.com", "password": "long-enough-pass"}, "username"),
])
def test_create_rejects_bad_input_with_the_field_named(client, admin_token, bob_id, payload, field):
    response = client.post("/api/v1/users/", headers=bearer(admin_token), json=payload)
    assert response.status_code == 422, response.json
    assert response.json["success"] is False
    assert field in response.json["errors"], response.json


def test_json_body_of_the_wrong_shape(client, admin_token):
    for body in ([1, 2], "text", None):
        response = client.post("/api/v1/users/", headers=bearer(admin_token), json=body)
        assert response.status_code == 422, (body, response.json)
    response = client.post("/api/v1/users/", headers={**bearer(admin_token), "Content-Type": "application/json"},
                           data="{not json")
    assert response.status_code in (400, 422)
    assert response.json["success"] is False


@pytest.mark.parametrize("field, value", [
    ("password", "long-enough-pass\ud800"), ("email", "dave\ud800@example.com"), ("full_name", "Dave \udfff"),
    ("role", "\x00"),
])
def test_text_no_database_can_store_is_a_422_not_a_500(client, admin_token, bob_id, field, value):
    """JSON can escape a lone surrogate ("\\ud800") or a NUL ("\\u0000"): hashing or storing a lone surrogate
    was a 500 on every database, and looking up the role "\\u0000" a 500 on PostgreSQL."""
    h = {**bearer(admin_token), "Content-Type": "application/json"}
    fields = {"username": "dave", "email": "dave@example.com", "password": "long-enough-pass", field: value}
    created = client.post("/api/v1/users/", headers=h, data=json.dumps(fields))
    assert created.status_code == 422 and field in created.json["errors"], created.json
    if field == "password":
        changed = client.post(f"/api/v1/users/{bob_id}/password", headers=h, data=json.dumps({field: value}))
    else:
        changed = client.patch(f"/api/v1/users/{bob_id}", headers=h, data=json.dumps({field: value}))
    assert changed.status_code == 422 and field in changed.json["errors"], changed.json


def test_rules_answer_422_not_500(client, admin_token, admin_id):
    h = bearer(admin_token)
    assert client.post(f"/api/v1/users/{admin_id}/deactivate", headers=h).status_code == 422
    assert client.delete(f"/api/v1/users/{admin_id}", headers=h).json["errors"] == {
        "user": ["You cannot delete your own account."]}
    assert client.patch(f"/api/v1/users/{admin_id}", headers=h, json={"role": "user"}).status_code == 422


def test_unknown_ids(client, admin_token):
    h = bearer(admin_token)
    assert client.get("/api/v1/users/999", headers=h).status_code == 404
    assert client.get("/api/v1/users/99999999999999999999999", headers=h).status_code == 404
    assert client.get("/api/v1/users/abc", headers=h).status_code == 404


def test_session_calls_need_the_csrf_header_but_token_calls_do_not(client, auth, admin_id, bob_id, admin_token):
    auth.login("admin")
    url = f"/api/v1/users/{bob_id}/status"
    refused = client.post(url, json={"status": "pending"})
    assert refused.status_code == 400 and refused.json["success"] is False
    token = csrf_token(client, "/admin/users/")
    assert client.post(url, json={"status": "pending"}, headers={"X-CSRFToken": token}).status_code == 200
    anonymous = client.application.test_client()
    assert anonymous.post(url, json={"status": "active"}, headers=bearer(admin_token)).status_code == 200


def test_list_and_search(client, admin_token, make_user):
    make_user("alice")
    make_user("alfred")
    body = client.get("/api/v1/users/?search=al&limit=1", headers=bearer(admin_token)).json["data"]
    assert body["total"] == 2 and [u["username"] for u in body["items"]] == ["alfred"]
    assert client.get("/api/v1/users/?nope=1", headers=bearer(admin_token)).status_code == 422


def test_password_never_appears_in_responses_or_audit(client, admin_token, app, audit_rows):
    canary = "Canary-Pa55word-XYZ"
    client.post("/api/v1/users/", headers=bearer(admin_token), json={
        "username": "eve", "email": "eve@example.com", "password": canary})
    rows = audit_rows()
    assert rows and not any(canary in str(vars(r)) for r in rows)
    assert PASSWORD not in str([vars(r) for r in rows])
