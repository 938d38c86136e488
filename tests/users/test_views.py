"""The admin user-management pages under /admin/users/: every action, its audit row, and bad input."""

import html
import re

import pytest
from sqlalchemy import select

from audit_portal.extensions import db
from audit_portal.users.models import User
from tests.conftest import PASSWORD, csrf_token

NEW_PASSWORD = "fresh-Passw0rd-42"
ROW_RE = re.compile(r'<td><a href="/admin/users/\d+">([^<]+)</a></td>')


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def listed(response) -> list[str]:
    """The usernames in the table of a list page, in order."""
    return ROW_RE.findall(response.get_data(as_text=True))


def post(client, url, data=None, token_url="/auth/password"):
    """POST with a valid CSRF token (the token is per session, so any page's token does)."""
    return client.post(url, data={**(data or {}), "csrf_token": csrf_token(client, token_url)})


def log_in(client, username, password=PASSWORD):
    return client.post("/auth/login", data={"username": username, "password": password,
                                            "csrf_token": csrf_token(client)})


def logged_in_client(app, username):
    """A second, independent browser. (Not the ``client`` fixture: pytest-flask keeps that client's
    last request context pushed, and another client's requests would then share its ``g``.)"""
    client = app.test_client()
    assert log_in(client, username).status_code == 302
    return client


def load(app, user_id) -> User | None:
    with app.app_context():
        user = db.session.get(User, user_id)
        if user is not None:
            user.role  # noqa: B018 - load the role before the session closes
            db.session.expunge(user)
        return user


def create_form(**overrides) -> dict:
    data = {"username": "carol", "email": "carol@example.com", "full_name": "Carol Jones", "role": "user",
            "status": "active", "is_active": "y", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    data.update(overrides)
    return data


# -- list ------------------------------------------------------------------------------------


def test_list_is_paginated_in_username_order(admin_client, make_user):
    for i in range(12):
        make_user(f"user{i:02d}")
    first = admin_client.get("/admin/users/?per_page=10")
    assert first.status_code == 200
    assert listed(first) == ["admin"] + [f"user{i:02d}" for i in range(9)]
    assert "Page 1 of 2" in page_text(first)
    second = admin_client.get("/admin/users/?per_page=10&page=2")
    assert listed(second) == ["user09", "user10", "user11"]
    assert "Page 2 of 2" in page_text(second)


def test_list_ignores_a_bad_page_size_and_page(admin_client, make_user):
    for i in range(3):
        make_user(f"user{i}")
    response = admin_client.get("/admin/users/?per_page=100000&page=-4")
    assert response.status_code == 200
    assert listed(response) == ["admin", "user0", "user1", "user2"]
    assert admin_client.get("/admin/users/?page=abc").status_code == 200


def test_search_matches_username_email_and_name_case_insensitively(admin_client, make_user):
    make_user("bob", full_name="Robert Smith")
    make_user("carol", email="carol@corp.example")
    make_user("dave")
    assert listed(admin_client.get("/admin/users/?q=SMITH")) == ["bob"]
    assert listed(admin_client.get("/admin/users/?q=corp.EXAMPLE")) == ["carol"]
    assert listed(admin_client.get("/admin/users/?q=DAV")) == ["dave"]
    empty = admin_client.get("/admin/users/?q=nobody-at-all")
    assert empty.status_code == 200
    assert listed(empty) == []
    assert "No users match “nobody-at-all”" in page_text(empty)


@pytest.mark.parametrize(("query", "expected"), [
    ("under_", ["under_score"]),  # "_" is a literal, not "any one character"
    ("100%", ["hundred"]),  # "%" is a literal, not "anything"
    ("0\\", ["slash"]),  # a backslash neither breaks the query nor escapes anything
    ("under\x00", []),  # a NUL byte matches nothing (and is no 500 on PostgreSQL)
])
def test_search_treats_like_wildcards_literally(admin_client, make_user, query, expected):
    make_user("under_score")
    make_user("underXscore")
    make_user("hundred", full_name="100% sure")
    make_user("percent", full_name="100 percent sure")
    make_user("slash", full_name="C:\\dir10\\")
    response = admin_client.get("/admin/users/", query_string={"q": query})
    assert response.status_code == 200
    assert listed(response) == expected


# -- create ----------------------------------------------------------------------------------


def test_create_user(app, admin_client, admin_id, auth, audit_rows):
    response = post(admin_client, "/admin/users/new", create_form(role="admin"), "/admin/users/new")
    assert response.status_code == 302
    user_id = int(response.headers["Location"].rsplit("/", 1)[1])
    detail = admin_client.get(response.headers["Location"])
    assert "User carol created." in page_text(detail)
    carol = load(app, user_id)
    assert (carol.username, carol.email, carol.full_name, carol.role.name) == (
        "carol", "carol@example.com", "Carol Jones", "admin")
    [row] = audit_rows(action_type="CREATE", resource_id=str(user_id))
    assert row.user_id == admin_id and row.username == "admin" and row.status == "SUCCESS"
    assert row.resource_type == "USER"
    assert row.event_metadata["new"]["username"] == "carol"
    assert row.event_metadata["new"]["role"] == "admin"
    assert NEW_PASSWORD not in str(row.event_metadata) + row.description
    auth.logout()
    assert auth.login("carol", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(("overrides", "message"), [
    ({"username": ""}, "This field is required."),
    ({"username": "x" * 65}, "Field cannot be longer than 64 characters."),
    ({"username": "ab"}, "Username must be 3 to 64 characters"),
    ({"username": "bad name!"}, "Username must be 3 to 64 characters"),
    ({"email": ""}, "This field is required."),
    ({"email": "not-an-email"}, "Enter a valid email address."),
    ({"email": "car\x00ol@example.com"}, "Enter a valid email address."),
    ({"email": "a" * 250 + "@example.com"}, "Field cannot be longer than 254 characters."),
    ({"full_name": "x" * 121}, "Field cannot be longer than 120 characters."),
    ({"password": "", "confirm": ""}, "This field is required."),
    ({"password": "short", "confirm": "short"}, "Password must be at least 10 characters long."),
    ({"password": "x" * 257, "confirm": "x" * 257}, "Field cannot be longer than 256 characters."),
    ({"password": "carol-is-great", "confirm": "carol-is-great"}, "Password must not contain the username."),
    ({"password": "abababababab", "confirm": "abababababab"}, "Password is too simple"),
    ({"confirm": "something-else-42"}, "Passwords do not match."),
    ({"role": "superuser"}, "Not a valid choice."),
    ({"status": "deleted"}, "Not a valid choice."),
])
def test_create_rejects_bad_input(app, admin_client, admin_id, audit_rows, overrides, message):
    response = post(admin_client, "/admin/users/new", create_form(**overrides), "/admin/users/new")
    assert response.status_code == 400
    assert message in page_text(response)
    with app.app_context():
        assert db.session.scalar(select(User).where(User.email == "carol@example.com")) is None
    assert [row.resource_id for row in audit_rows(action_type="CREATE", status="SUCCESS")] == [str(admin_id)]  # the fixture's


@pytest.mark.parametrize(("overrides", "message"), [
    ({"username": "BOB"}, "The username 'BOB' is already taken."),
    ({"email": "Bob@Example.com"}, "The email 'bob@example.com' is already in use."),
])
def test_create_rejects_duplicates(app, admin_client, make_user, overrides, message):
    make_user("bob")
    response = post(admin_client, "/admin/users/new", create_form(**overrides), "/admin/users/new")
    assert response.status_code == 400
    assert message in page_text(response)
    with app.app_context():
        assert db.session.scalar(select(db.func.count(User.id))) == 2


# -- edit ------------------------------------------------------------------------------------


def test_edit_profile_records_old_and_new(app, admin_client, admin_id, make_user, audit_rows):
    bob_id = make_user("bob", full_name="Bob")
    form = admin_client.get(f"/admin/users/{bob_id}/edit")
    assert form.status_code == 200 and 'value="bob@example.com"' in form.get_data(as_text=True)
    response = post(admin_client, f"/admin/users/{bob_id}/edit",
                    {"username": "robert", "email": "Robert@Example.com", "full_name": "Bob", "role": "user"})
    assert response.status_code == 302
    bob = load(app, bob_id)
    assert (bob.username, bob.email) == ("robert", "robert@example.com")
    [row] = audit_rows(action_type="UPDATE")
    assert row.user_id == admin_id and row.resource_id == str(bob_id)
    assert row.event_metadata == {"old": {"username": "bob", "email": "bob@example.com"},
                                  "new": {"username": "robert", "email": "robert@example.com"}}
    assert audit_rows(action_type="ROLE_CHANGE", status="SUCCESS") == []


def test_edit_role_records_a_role_change(app, admin_client, make_user, audit_rows):
    bob_id = make_user("bob")
    response = post(admin_client, f"/admin/users/{bob_id}/edit",
                    {"username": "bob", "email": "bob@example.com", "full_name": "", "role": "admin"})
    assert response.status_code == 302
    assert load(app, bob_id).role.name == "admin"
    [row] = audit_rows(action_type="ROLE_CHANGE")
    assert row.resource_id == str(bob_id) and row.is_sensitive
    assert row.event_metadata == {"old": {"role": "user"}, "new": {"role": "admin"}}
    assert audit_rows(action_type="UPDATE", status="SUCCESS") == []


@pytest.mark.parametrize(("overrides", "message"), [
    ({"username": ""}, "This field is required."),
    ({"username": "ALICE"}, "The username 'ALICE' is already taken."),
    ({"email": "alice@example.com"}, "The email 'alice@example.com' is already in use."),
    ({"email": "x" * 255}, "Field cannot be longer than 254 characters."),
    ({"email": "b\x00ob@example.com"}, "Enter a valid email address."),
    ({"full_name": "x" * 121}, "Field cannot be longer than 120 characters."),
    ({"role": "root"}, "Not a valid choice."),
])
def test_edit_rejects_bad_input(app, admin_client, make_user, audit_rows, overrides, message):
    make_user("alice")
    bob_id = make_user("bob")
    data = {"username": "bob", "email": "bob@example.com", "full_name": "", "role": "user", **overrides}
    response = post(admin_client, f"/admin/users/{bob_id}/edit", data)
    assert response.status_code == 400
    assert message in page_text(response)
    bob = load(app, bob_id)
    assert (bob.username, bob.email, bob.role.name) == ("bob", "bob@example.com", "user")
    assert audit_rows(action_type="UPDATE", status="SUCCESS") == []
    assert audit_rows(action_type="ROLE_CHANGE", status="SUCCESS") == []


def test_the_last_admin_cannot_demote_themself(app, admin_client, admin_id, audit_rows):
    response = post(admin_client, f"/admin/users/{admin_id}/edit",
                    {"username": "admin", "email": "admin@example.com", "full_name": "", "role": "user"})
    assert response.status_code == 400
    assert "This is the last active administrator" in page_text(response)
    assert load(app, admin_id).role.name == "admin"
    assert audit_rows(action_type="ROLE_CHANGE", status="SUCCESS") == []


# -- activate / deactivate / status ----------------------------------------------------------


def test_deactivate_and_activate(app, admin_client, admin_id, make_user, audit_rows):
    bob_id = make_user("bob")
    response = post(admin_client, f"/admin/users/{bob_id}/deactivate")
    assert response.status_code == 302
    assert "User bob deactivated." in page_text(admin_client.get(response.headers["Location"]))
    assert load(app, bob_id).is_active is False
    response = post(admin_client, f"/admin/users/{bob_id}/activate")
    assert response.status_code == 302
    assert load(app, bob_id).is_active is True
    [deactivate] = audit_rows(action_type="DEACTIVATE")
    [activate] = audit_rows(action_type="ACTIVATE")
    assert deactivate.user_id == activate.user_id == admin_id
    assert deactivate.resource_id == activate.resource_id == str(bob_id)
    assert deactivate.event_metadata == {"old": {"is_active": True}, "new": {"is_active": False}}
    assert deactivate.id < activate.id


def test_a_deactivated_user_is_logged_out_and_cannot_log_in(app, admin_id, make_user):
    bob_id = make_user("bob")
    admin, bob = logged_in_client(app, "admin"), logged_in_client(app, "bob")
    assert bob.get("/auth/password").status_code == 200
    assert post(admin, f"/admin/users/{bob_id}/deactivate").status_code == 302
    assert bob.get("/auth/password").status_code == 302
    assert log_in(bob, "bob").status_code == 401


def test_admin_cannot_deactivate_themself(app, admin_client, admin_id, audit_rows):
    response = post(admin_client, f"/admin/users/{admin_id}/deactivate")
    assert response.status_code == 400
    assert "You cannot deactivate your own account." in page_text(response)
    assert load(app, admin_id).is_active is True
    assert audit_rows(action_type="DEACTIVATE", status="SUCCESS") == []


def test_change_status_records_old_and_new(app, admin_client, admin_id, make_user, audit_rows):
    bob_id = make_user("bob")
    response = post(admin_client, f"/admin/users/{bob_id}/status", {"status": "suspended"})
    assert response.status_code == 302
    assert "Status of bob is now suspended." in page_text(admin_client.get(response.headers["Location"]))
    assert load(app, bob_id).status == "suspended"
    [row] = audit_rows(action_type="STATUS_CHANGE")
    assert row.user_id == admin_id and row.resource_id == str(bob_id)
    assert row.event_metadata == {"old": {"status": "active"}, "new": {"status": "suspended"}}


@pytest.mark.parametrize(("target", "status", "message"), [
    ("bob", "archived", "Not a valid choice."),
    ("bob", "", "Not a valid choice."),
    ("admin", "suspended", "You cannot suspend or park your own account."),
    ("admin", "pending", "You cannot suspend or park your own account."),
])
def test_change_status_rejects(app, admin_client, admin_id, make_user, audit_rows, target, status, message):
    ids = {"admin": admin_id, "bob": make_user("bob")}
    response = post(admin_client, f"/admin/users/{ids[target]}/status", {"status": status})
    assert response.status_code == 400
    assert message in page_text(response)
    assert load(app, ids[target]).status == "active"
    assert audit_rows(action_type="STATUS_CHANGE", status="SUCCESS") == []


# -- reset password --------------------------------------------------------------------------


def test_reset_password_ends_sessions_and_is_sensitive(app, admin_id, make_user, audit_rows):
    bob_id = make_user("bob")
    admin, bob = logged_in_client(app, "admin"), logged_in_client(app, "bob")
    assert bob.get("/auth/password").status_code == 200
    response = post(admin, f"/admin/users/{bob_id}/password", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert bob.get("/auth/password").status_code == 302  # bob's session has ended
    assert log_in(bob, "bob", PASSWORD).status_code == 401
    assert log_in(bob, "bob", NEW_PASSWORD).status_code == 302
    [row] = audit_rows(action_type="PASSWORD_CHANGE", resource_id=str(bob_id))
    assert row.is_sensitive and row.username == "admin" and row.status == "SUCCESS"
    assert NEW_PASSWORD not in str(row.event_metadata) + row.description


@pytest.mark.parametrize(("password", "confirm", "message"), [
    ("", "", "This field is required."),
    (NEW_PASSWORD, "not-the-same-42", "Passwords do not match."),
    ("short", "short", "Password must be at least 10 characters long."),
    ("bob-bob-bob-bob", "bob-bob-bob-bob", "Password must not contain the username."),
    ("x" * 257, "x" * 257, "Field cannot be longer than 256 characters."),
])
def test_reset_password_rejects_bad_input(app, admin_client, make_user, audit_rows, password, confirm, message):
    bob_id = make_user("bob")
    response = post(admin_client, f"/admin/users/{bob_id}/password", {"password": password, "confirm": confirm})
    assert response.status_code == 400
    assert message in page_text(response)
    assert audit_rows(action_type="PASSWORD_CHANGE", status="SUCCESS") == []


# -- delete ----------------------------------------------------------------------------------


def test_delete_asks_for_confirmation_then_deletes(app, admin_client, admin_id, make_user, audit_rows):
    bob_id = make_user("bob")
    confirm = admin_client.get(f"/admin/users/{bob_id}/delete")
    assert confirm.status_code == 200
    assert "Delete user bob?" in page_text(confirm)
    assert load(app, bob_id) is not None  # a GET deletes nothing
    response = post(admin_client, f"/admin/users/{bob_id}/delete", token_url=f"/admin/users/{bob_id}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/users/"
    listing = admin_client.get("/admin/users/")
    assert "User bob deleted." in page_text(listing)
    assert listed(listing) == ["admin"]
    assert load(app, bob_id) is None
    assert admin_client.get(f"/admin/users/{bob_id}").status_code == 404
    [row] = audit_rows(action_type="DELETE")
    assert row.user_id == admin_id and row.resource_id == str(bob_id)
    assert row.event_metadata["old"]["username"] == "bob"


def test_admin_cannot_delete_themself(app, admin_client, admin_id, audit_rows):
    response = post(admin_client, f"/admin/users/{admin_id}/delete")
    assert response.status_code == 400
    assert "You cannot delete your own account." in page_text(response)
    assert load(app, admin_id) is not None
    assert audit_rows(action_type="DELETE", status="SUCCESS") == []


# -- CSRF, unknown ids, access -----------------------------------------------------------------

POST_ACTIONS = [
    ("new", create_form()),
    ("{id}/edit", {"username": "robert", "email": "bob@example.com", "full_name": "", "role": "user"}),
    ("{id}/deactivate", {}),
    ("{id}/status", {"status": "suspended"}),
    ("{id}/password", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}),
    ("{id}/delete", {}),
]


@pytest.mark.parametrize(("action", "data"), POST_ACTIONS)
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_posts_without_a_valid_csrf_token_are_refused(app, admin_client, make_user, action, data, token):
    bob_id = make_user("bob")
    if token is not None:
        data = {**data, "csrf_token": token}
    response = admin_client.post(f"/admin/users/{action.format(id=bob_id)}", data=data)
    assert response.status_code == 400
    assert "security token is missing or wrong" in page_text(response)
    bob = load(app, bob_id)
    assert (bob.username, bob.is_active, bob.status) == ("bob", True, "active")
    with app.app_context():
        assert db.session.scalar(select(db.func.count(User.id))) == 2


@pytest.mark.parametrize(("method", "action"), [
    ("get", ""), ("get", "/edit"), ("get", "/delete"), ("post", "/edit"), ("post", "/activate"),
    ("post", "/deactivate"), ("post", "/status"), ("post", "/password"), ("post", "/delete"),
])
@pytest.mark.parametrize("user_id", ["99999", "99999999999999999999999"])
def test_unknown_user_id_is_a_404(admin_client, method, action, user_id):
    url = f"/admin/users/{user_id}{action}"
    if method == "get":
        response = admin_client.get(url)
    else:
        response = post(admin_client, url, {"status": "active", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 404
    assert f"There is no user with id {user_id}." in page_text(response)


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/admin/users/"), ("get", "/admin/users/new"), ("get", "/admin/users/{id}"),
    ("get", "/admin/users/{id}/edit"), ("get", "/admin/users/{id}/delete"), ("post", "/admin/users/new"),
    ("post", "/admin/users/{id}/deactivate"), ("post", "/admin/users/{id}/status"),
    ("post", "/admin/users/{id}/delete"),
])
def test_non_admin_gets_403_and_it_is_recorded(app, client, auth, make_user, admin_id, audit_rows, method, path):
    bob_id = make_user("bob")
    auth.login("bob")
    url = path.format(id=admin_id)
    if method == "get":
        response = client.get(url)
    else:
        response = post(client, url, {**create_form(), "status": "suspended"})
    assert response.status_code == 403
    assert "Forbidden" in page_text(response)
    admin = load(app, admin_id)
    assert (admin.is_active, admin.status) == (True, "active")
    with app.app_context():
        assert db.session.scalar(select(db.func.count(User.id))) == 2
    [denied] = audit_rows(action_type="PERMISSION_DENIED")
    assert denied.user_id == bob_id and denied.username == "bob" and denied.status == "FAILURE"
    assert url in denied.description


@pytest.mark.parametrize("path", ["/admin/users/", "/admin/users/new", "/admin/users/1", "/admin/users/1/delete"])
def test_anonymous_is_sent_to_login(client, admin_id, audit_rows, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")
    assert audit_rows(action_type="PERMISSION_DENIED") == []


def test_refused_attempts_are_recorded_with_the_reason(admin_client, admin_id, audit_rows):
    """A broken rule rolls the change back but is itself recorded, in its own transaction."""
    page = f"/admin/users/{admin_id}"
    response = admin_client.post(f"{page}/deactivate", data={"csrf_token": csrf_token(admin_client, page)})
    assert response.status_code == 400
    [refused] = audit_rows(action_type="DEACTIVATE")
    assert refused.status == "FAILURE" and refused.username == "admin" and refused.resource_id == str(admin_id)
    assert refused.event_metadata == {"field": "is_active", "reason": "You cannot deactivate your own account."}
