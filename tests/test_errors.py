"""Error responses: the JSON envelope under /api/, an HTML page elsewhere; unhandled exceptions recorded."""

import pytest
from flask import abort
from sqlalchemy.exc import OperationalError

ENVELOPE_KEYS = {"success", "message", "code", "status", "errors"}
SECRET_DETAIL = "internal-detail-7f3a"


def boom():
    raise ZeroDivisionError(f"division by zero near {SECRET_DETAIL}")


def meltdown():
    raise SystemError(f"interpreter trouble {SECRET_DETAIL}")


def forbidden():
    abort(403)


def database_gone():
    raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


@pytest.fixture
def app(app):
    """The app with test-only routes that fail, added before its first request."""
    for prefix in ("", "/api/v1"):
        app.add_url_rule(f"{prefix}/test-boom", f"test_boom{prefix}", boom)
        app.add_url_rule(f"{prefix}/test-meltdown", f"test_meltdown{prefix}", meltdown)
        app.add_url_rule(f"{prefix}/test-forbidden", f"test_forbidden{prefix}", forbidden)
        app.add_url_rule(f"{prefix}/test-database-gone", f"test_database_gone{prefix}", database_gone)
    return app


def assert_envelope(response, code: int, status: str):
    assert response.status_code == code
    assert response.is_json
    body = response.get_json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False and body["code"] == code and body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert body["errors"] == {}
    return body


def assert_html(response, code: int, title: str):
    assert response.status_code == code
    assert response.mimetype == "text/html"
    text = response.get_data(as_text=True)
    assert text.lstrip().startswith("<!doctype html>")
    assert f"{code} · {title}" in text
    return text


# -- 404 / 405 --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nope", "/api/v1/nope", "/api/", "/api", "/api/v1/audit-logs/nope/deeper"])
def test_404_under_api_is_the_json_envelope(client, path):
    assert_envelope(client.get(path), 404, "Not Found")


@pytest.mark.parametrize("path", ["/nope", "/admin/nope", "/apinope", "/auth/nope"])
def test_404_elsewhere_is_an_html_page(client, path):
    assert_html(client.get(path), 404, "Not Found")


def test_405_under_api_is_the_json_envelope_with_allow(client):
    response = client.delete("/api/openapi.json")
    assert_envelope(response, 405, "Method Not Allowed")
    assert "GET" in response.headers["Allow"]


def test_405_elsewhere_is_an_html_page_with_allow(client):
    response = client.get("/auth/logout")
    assert_html(response, 405, "Method Not Allowed")
    assert "POST" in response.headers["Allow"] and "GET" not in response.headers["Allow"]


def test_healthz_errors_answer_json(client):
    response = client.post("/healthz")
    assert_envelope(response, 405, "Method Not Allowed")
    assert "GET" in response.headers["Allow"]


def test_403_follows_the_same_rule(client, auth, make_user):
    make_user("bob")
    auth.login("bob")
    assert_envelope(client.get("/api/v1/test-forbidden"), 403, "Forbidden")
    assert_html(client.get("/test-forbidden"), 403, "Forbidden")


def test_400_for_a_bad_csrf_token_follows_the_same_rule(client):
    response = client.post("/auth/login", data={"username": "x", "password": "y", "csrf_token": "forged"})
    text = assert_html(response, 400, "Bad Request")
    assert "security token is missing or wrong" in text


# -- unhandled exceptions ---------------------------------------------------------------------


@pytest.mark.parametrize(("path", "json"), [("/test-boom", False), ("/api/v1/test-boom", True)])
def test_unhandled_exception_is_a_500_and_is_recorded(client, audit_rows, path, json):
    response = client.get(path, headers={"User-Agent": "pytest-agent"})
    if json:
        body = assert_envelope(response, 500, "Internal Server Error")
        assert SECRET_DETAIL not in body["message"]
    else:
        text = assert_html(response, 500, "Internal Server Error")
        assert SECRET_DETAIL not in text
        assert "it has been recorded" in text
    [event] = audit_rows(action_type="EXCEPTION_RAISED")
    assert event.status == "ERROR" and event.severity == "ERROR"
    assert event.error_type == "ZeroDivisionError"
    assert "Traceback (most recent call last)" in event.stack_trace
    assert "in boom" in event.stack_trace and "ZeroDivisionError: division by zero" in event.stack_trace
    assert event.path == path and event.http_method == "GET" and event.status_code == 500
    assert event.user_agent == "pytest-agent"
    assert event.fingerprint


def test_the_same_error_twice_shares_a_fingerprint(client, audit_rows):
    client.get("/test-boom")
    client.get("/test-boom")
    client.get("/test-meltdown")
    events = audit_rows(action_type="EXCEPTION_RAISED")
    assert len(events) == 3
    assert events[0].fingerprint == events[1].fingerprint != events[2].fingerprint
    assert events[0].request_id != events[1].request_id


@pytest.mark.parametrize("path", ["/test-meltdown", "/api/v1/test-meltdown"])
def test_a_system_error_is_critical(client, audit_rows, path):
    assert client.get(path).status_code == 500
    [event] = audit_rows(action_type="EXCEPTION_RAISED")
    assert event.severity == "CRITICAL" and event.error_type == "SystemError"


def test_an_exception_of_a_logged_in_user_names_them(admin_client, admin_id, audit_rows):
    assert admin_client.get("/test-boom").status_code == 500
    [event] = audit_rows(action_type="EXCEPTION_RAISED")
    assert (event.user_id, event.username) == (admin_id, "admin")


@pytest.mark.parametrize(("path", "json"), [("/test-database-gone", False), ("/api/v1/test-database-gone", True)])
def test_a_lost_database_is_a_503_not_a_500(client, audit_rows, path, json):
    response = client.get(path)
    if json:
        body = assert_envelope(response, 503, "Service Unavailable")
        assert "database is unavailable" in body["message"]
    else:
        assert "The database is unavailable" in assert_html(response, 503, "Service Unavailable")
    [event] = audit_rows(action_type="EXCEPTION_RAISED")
    assert event.status_code == 503 and event.error_type == "sqlalchemy.exc.OperationalError"
