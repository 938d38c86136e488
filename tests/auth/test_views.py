from audit_portal.audit.record.enums import ActionType, Status
from tests.conftest import PASSWORD, csrf_token, form_post


def test_login_page_renders(client):
    response = client.get("/auth/login")
    assert response.status_code == 200
    assert b'name="csrf_token"' in response.data


def test_admin_logs_in_and_lands_on_the_audit_log(client, auth, admin_id, audit_rows):
    response = auth.login("admin")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").headers["Location"] == "/admin/audit-logs/"
    page = client.get("/admin/audit-logs/")
    assert page.status_code == 200
    assert b"Log out" in page.data
    [login] = audit_rows(action_type=ActionType.LOGIN.value)
    assert login.user_id == admin_id and login.username == "admin" and login.status == Status.SUCCESS.value
    assert login.ip_address == "127.0.0.1"


def test_username_is_case_insensitive(client, auth, admin_id):
    assert auth.login("ADMIN").status_code == 302


def test_wrong_password_is_refused_and_recorded(client, auth, admin_id, audit_rows):
    response = auth.login("admin", "not-the-password")
    assert response.status_code == 401
    assert b"Invalid username or password." in response.data
    [failed] = audit_rows(action_type=ActionType.LOGIN_FAILED.value)
    assert failed.status == Status.FAILURE.value
    assert "admin" in failed.description
    assert failed.event_metadata["reason"] == "wrong password"
    assert "not-the-password" not in str(failed.event_metadata) + failed.description


def test_unknown_user_gets_the_same_answer(client, auth, audit_rows):
    response = auth.login("nobody", "whatever-password")
    assert response.status_code == 401
    assert b"Invalid username or password." in response.data
    [failed] = audit_rows(action_type=ActionType.LOGIN_FAILED.value)
    assert failed.event_metadata == {"attempted_username": "nobody", "reason": "unknown user", "known_user": False}


def test_inactive_and_suspended_users_cannot_log_in(client, auth, make_user, audit_rows):
    make_user("sleepy", is_active=False)
    make_user("parked", status="suspended")
    assert auth.login("sleepy").status_code == 401
    assert auth.login("parked").status_code == 401
    reasons = [row.event_metadata["reason"] for row in audit_rows(action_type="LOGIN_FAILED")]
    assert reasons == ["account deactivated", "account suspended"]


def test_login_without_csrf_token_is_refused(client, admin_id):
    response = client.post("/auth/login", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 400
    assert b"security token" in response.data


def test_empty_login_form_is_a_400_with_messages(client):
    response = client.post("/auth/login", data={"username": "", "password": "", "csrf_token": csrf_token(client)})
    assert response.status_code == 400
    assert b"This field is required." in response.data


def test_session_is_renewed_at_login(client, auth, admin_id):
    before = csrf_token(client)
    auth.login("admin")
    after = csrf_token(client, "/auth/password")
    assert before != after


def test_next_parameter_only_allows_local_paths(client, admin_id):
    token = csrf_token(client)
    data = {"username": "admin", "password": PASSWORD, "csrf_token": token}
    response = client.post("/auth/login?next=https://evil.example/", data=data)
    assert response.headers["Location"] == "/"
    client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/auth/password")})
    data["csrf_token"] = csrf_token(client)
    response = client.post("/auth/login?next=/admin/users/", data=data)
    assert response.headers["Location"] == "/admin/users/"


def test_logout_requires_post_with_csrf(admin_client):
    assert admin_client.get("/auth/logout").status_code == 405
    assert admin_client.post("/auth/logout").status_code == 400
    assert admin_client.get("/admin/users/").status_code == 200


def test_logout_ends_the_session_and_is_recorded(admin_client, auth, audit_rows):
    response = auth.logout()
    assert response.status_code == 302
    assert admin_client.get("/admin/users/").status_code == 302
    [logout] = audit_rows(action_type=ActionType.LOGOUT.value)
    assert logout.username == "admin"


def test_a_copied_session_cookie_stops_working_after_logout(app, admin_client, auth):
    cookie = admin_client.get_cookie("session").value
    auth.logout()
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/admin/users/").status_code == 302


def test_anonymous_user_is_sent_to_login(client):
    response = client.get("/admin/users/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


def test_change_own_password(client, auth, make_user, audit_rows):
    make_user("bob")
    auth.login("bob")
    response = form_post(client, "/auth/password",
                         {"current_password": PASSWORD, "new_password": "brand-new-pass-42", "confirm": "brand-new-pass-42"})
    assert response.status_code == 302
    auth.logout()
    assert auth.login("bob", PASSWORD).status_code == 401
    assert auth.login("bob", "brand-new-pass-42").status_code == 302
    [change] = audit_rows(action_type=ActionType.PASSWORD_CHANGE.value, status="SUCCESS")
    assert change.is_sensitive
    assert change.username == "bob"


def test_change_password_rejects_bad_input(client, auth, make_user):
    make_user("bob")
    auth.login("bob")
    cases = [
        ({"current_password": "wrong-one-xx", "new_password": "brand-new-pass-42", "confirm": "brand-new-pass-42"},
         b"The current password is wrong."),
        ({"current_password": PASSWORD, "new_password": "short", "confirm": "short"}, b"at least 10 characters"),
        ({"current_password": PASSWORD, "new_password": "brand-new-pass-42", "confirm": "different-pass-42"},
         b"Passwords do not match."),
    ]
    for data, message in cases:
        response = form_post(client, "/auth/password", data)
        assert response.status_code == 400
        assert message in response.data


def test_a_nul_byte_in_the_username_is_a_failed_login_not_a_500(client, admin_id, audit_rows):
    response = client.post("/auth/login",
                           data={"username": "ad\x00min", "password": PASSWORD, "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert b"Invalid username or password." in response.data
    [failed] = audit_rows(action_type=ActionType.LOGIN_FAILED.value)
    assert failed.event_metadata["reason"] == "unknown user"
