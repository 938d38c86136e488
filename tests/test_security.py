"""The security an audit system needs, attacked from outside: headers, cookies, proxies, login timing,
escaping, log injection, SQL and LIKE metacharacters, secrets that must never be stored, access control
and CSRF. (Logout ending a copied session, session renewal at login and X-Forwarded-For in audit events
are proven in tests/auth/test_views.py and tests/audit/write/test_hooks.py; see docs/security.md.)"""

from __future__ import annotations

import html
import json
import logging
import re
import statistics
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import inspect, select, text

from audit_portal import create_app
from audit_portal.audit.integrity.holds import add_hold
from audit_portal.audit.integrity.models import LegalHold
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.write.service import log_error
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from audit_portal.users import services as user_services
from audit_portal.users.models import ApiToken, User
from tests.api_helpers import bearer, make_token
from tests.conftest import PASSWORD, csrf_token, form_post

# -- helpers ----------------------------------------------------------------------------------


@contextmanager
def built_app(app_config: dict, **overrides):
    """An app with settings the shared fixtures do not give (its own tables, users made by the caller)."""
    app = create_app({**app_config, **overrides})
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.drop_all()
        db.create_all()
        user_services.ensure_default_roles()
        db.session.commit()
    try:
        yield app
    finally:
        app.extensions["audit_writer"].close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def add_user(app: Flask, username: str, role: str = "user", password: str = PASSWORD, **fields) -> int:
    with app.app_context():
        user = user_services.create_user(None, username=username, email=f"{username}@example.com",
                                         password=password, role=role, **fields)
        db.session.commit()
        return user.id


def login(client, username: str, password: str = PASSWORD, **kwargs):
    return client.post("/auth/login", data={"username": username, "password": password,
                                            "csrf_token": csrf_token(client)}, **kwargs)


def logged_in(app: Flask, username: str, password: str = PASSWORD):
    client = app.test_client()
    response = login(client, username, password)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def insert_events(app: Flask, events: list[dict]) -> list[int]:
    with app.app_context():
        ids = [db.session.execute(db.insert(AuditLog.__table__).values(**e).returning(AuditLog.__table__.c.id))
               .scalar_one() for e in events]
        db.session.commit()
        return ids


def event(description: str, action=ActionType.UPDATE, resource=ResourceType.USER, **fields) -> dict:
    return build_event(action, resource, fields.pop("resource_id", None), description, timestamp=utcnow(), **fields)


def audit_actions(app: Flask) -> list[str]:
    assert app.extensions["audit_writer"].flush()
    with app.app_context():
        return list(db.session.scalars(select(AuditLog.action_type).order_by(AuditLog.id)))


# -- security headers -------------------------------------------------------------------------


def csp_directives(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in value.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_security_headers(response, path: str) -> None:
    headers = response.headers
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval, no other host
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"] and csp["form-action"] == ["'self'"]
    for name, sources in csp.items():
        for source in sources:
            allowed = source in ("'self'", "'none'") or (name == "img-src" and source == "data:") or (
                name == "style-src" and source == "'unsafe-inline'" and path == "/api/docs")
            assert allowed, (path, name, source)
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin-when-cross-origin")


def _boom():
    raise ZeroDivisionError("boom")


@pytest.fixture
def app_with_boom(app):
    app.add_url_rule("/test-security-boom", "test_security_boom", _boom)
    app.add_url_rule("/api/v1/test-security-boom", "api_test_security_boom", _boom)
    return app


ANONYMOUS_RESPONSES = [
    # (method, path, status, mimetype)
    ("GET", "/auth/login", 200, "text/html"),
    ("GET", "/", 302, "text/html"),
    ("GET", "/healthz", 200, "application/json"),
    ("GET", "/api/openapi.json", 200, "application/json"),
    ("GET", "/api/docs", 200, "text/html"),
    ("GET", "/static/css/app.css", 200, "text/css"),
    ("GET", "/api/v1/me", 401, "application/json"),
    ("GET", "/api/v1/audit-logs/", 401, "application/json"),
    ("GET", "/no-such-page", 404, "text/html"),
    ("GET", "/api/v1/no-such-endpoint", 404, "application/json"),
    ("GET", "/auth/logout", 405, "text/html"),
    ("POST", "/auth/login", 400, "text/html"),  # no CSRF token
    ("GET", "/test-security-boom", 500, "text/html"),
    ("GET", "/api/v1/test-security-boom", 500, "application/json"),
]


def test_every_kind_of_response_carries_the_security_headers(app_with_boom, admin_id):
    client = app_with_boom.test_client()
    for method, path, status, mimetype in ANONYMOUS_RESPONSES:
        response = client.open(path, method=method)
        assert (response.status_code, response.mimetype) == (status, mimetype), path
        assert_security_headers(response, path)
    admin = logged_in(app_with_boom, "admin")
    for path, status, mimetype in [("/admin/audit-logs/", 200, "text/html"), ("/api/v1/audit-logs/", 200,
                                   "application/json"), ("/admin/audit-logs/export?format=csv", 200, "text/csv"),
                                   ("/admin/audit-logs/?status=nope", 422, "text/html")]:
        response = admin.get(path)
        assert (response.status_code, response.mimetype) == (status, mimetype), path
        assert_security_headers(response, path.split("?")[0])


# -- session cookie ---------------------------------------------------------------------------


def session_cookie(response) -> str:
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    return cookie


def test_the_session_cookie_is_httponly_and_samesite_lax_and_not_secure_by_default(client, admin_id):
    for response in (client.get("/auth/login"), login(client, "admin")):
        attributes = [part.strip().lower() for part in session_cookie(response).split(";")]
        assert "httponly" in attributes and "samesite=lax" in attributes
        assert "secure" not in attributes  # the default suits a local run over plain HTTP


def test_session_cookie_secure_true_marks_the_cookie_secure(app_config, monkeypatch):
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "true")  # as a deployment behind TLS sets it
    with built_app(app_config) as app:
        add_user(app, "admin", role="admin")
        client = app.test_client()
        for response in (client.get("/auth/login"), login(client, "admin")):
            attributes = [part.strip().lower() for part in session_cookie(response).split(";")]
            assert {"secure", "httponly", "samesite=lax"} <= set(attributes)


# -- trusted proxies: the per-IP login limit cannot be dodged with X-Forwarded-For ---------------


@pytest.mark.parametrize(("trusted", "limited"), [(0, True), (1, False)])
def test_a_spoofed_x_forwarded_for_does_not_dodge_the_per_ip_login_limit(app_config, trusted, limited):
    """With no trusted proxy, X-Forwarded-For is the client's own claim: rotating it changes nothing. Behind
    one trusted proxy, the entry that proxy appended is the client, so different entries are different
    clients. (That the recorded IP follows the same rule: tests/audit/write/test_hooks.py.)"""
    with built_app(app_config, RATELIMIT_ENABLED=True, TRUSTED_PROXY_COUNT=trusted, LOGIN_LIMIT_PER_IP="3 per minute",
                   LOGIN_LIMIT_PER_USERNAME="100 per minute") as app:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "10.0.0.2"
        token = csrf_token(client)
        statuses = [client.post("/auth/login", headers={"X-Forwarded-For": f"198.51.100.{i}"},
                                data={"username": f"guess{i}", "password": "wrong-password", "csrf_token": token})
                    .status_code for i in range(5)]
        assert statuses == ([401, 401, 401, 429, 429] if limited else [401] * 5)


# -- login timing -----------------------------------------------------------------------------


def test_an_unknown_user_takes_as_long_to_refuse_as_a_wrong_password(app_config):
    """At the production argon2id cost (OWASP: 19 MiB, t=2), refusing an unknown username costs the same
    hashing time as refusing a known user's wrong password: response times do not reveal which usernames exist."""
    with built_app(app_config, PASSWORD_HASH_MEMORY_KIB=19456, PASSWORD_HASH_TIME_COST=2) as app:
        add_user(app, "admin", role="admin")
        client = app.test_client()
        token = csrf_token(client)

        def attempt(username: str) -> float:
            # CPU time of this thread (the test client runs the request in it), not wall time: what the
            # hashing costs, without the waits a busy shared machine adds (wall times here vary fivefold).
            started = time.thread_time()
            response = client.post("/auth/login", data={"username": username, "password": "wrong-password-1",
                                                        "csrf_token": token})
            elapsed = time.thread_time() - started
            assert response.status_code == 401
            return elapsed

        attempt("admin"), attempt("nobody-here")  # warm up (the unknown-user path hashes its dummy once)
        known, unknown = [], []
        for _ in range(7):
            known.append(attempt("admin"))
            unknown.append(attempt("nobody-here"))
        ratio = statistics.median(unknown) / statistics.median(known)
        assert statistics.median(known) > 0.005, "the production cost was not applied"
        assert 0.5 < ratio < 2, (ratio, known, unknown)


# -- escaping ---------------------------------------------------------------------------------

XSS = '"><script>alert(1)</script>'
RAW_MARKERS = ("<script>alert(1)", '"><script')


def assert_escaped(response, expect_shown: bool = True) -> None:
    body = response.get_data(as_text=True)
    for marker in RAW_MARKERS:
        assert marker not in body, (response.request.path, body[max(0, body.find(marker) - 300):][:600])
    if expect_shown:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, response.request.path


def test_script_in_a_user_agent_username_full_name_path_and_description_is_escaped_everywhere(app, admin_id,
                                                                                             audit_rows):
    """The payloads arrive through real requests (a login attempt whose username and User-Agent are a
    script, a path that is one, a user's full name) and are then shown on every page that shows them."""
    admin = logged_in(app, "admin")
    response = form_post(admin, "/admin/users/new", {
        "username": "carol", "email": "carol@example.com", "full_name": XSS, "role": "user", "status": "active",
        "is_active": "y", "password": "fresh-Passw0rd-42", "confirm": "fresh-Passw0rd-42"})
    assert response.status_code == 302
    carol_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    visitor = app.test_client()
    visitor.environ_base["HTTP_USER_AGENT"] = XSS
    failed = visitor.post("/auth/login", data={"username": XSS, "password": "wrong-password-1",
                                               "csrf_token": csrf_token(visitor)})
    assert failed.status_code == 401
    assert_escaped(failed)  # the form shows the attempted username again
    assert_escaped(visitor.get(f"/auth/login?next=/{XSS}"), expect_shown=False)
    assert_escaped(admin.get(f"/admin/users/{XSS}"), expect_shown=False)  # a 404, recorded with its path
    assert_escaped(admin.get(f"/admin/users/?q={XSS}"))
    with app.test_request_context(f"/{XSS}", headers={"User-Agent": XSS}):
        log_error(ValueError(XSS))

    [login_failed] = audit_rows(action_type="LOGIN_FAILED")
    assert XSS in login_failed.description and login_failed.user_agent == XSS
    [not_found] = [r for r in audit_rows(action_type="REQUEST") if r.status_code == 404]
    assert XSS in not_found.path
    [error] = audit_rows(action_type="ERROR_OCCURRED")
    pages = [
        "/admin/users/", f"/admin/users/{carol_id}", f"/admin/users/{carol_id}/edit", f"/admin/users/{carol_id}/delete",
        "/admin/audit-logs/", "/admin/audit-logs/?search=script", f"/admin/audit-logs/{login_failed.id}",
        f"/admin/audit-logs/{not_found.id}", f"/admin/audit-logs/{error.id}", "/admin/audit-logs/errors",
        f"/admin/audit-logs/errors?fingerprint={error.fingerprint}", f"/admin/audit-logs/?search={XSS}",
    ]
    for page in pages:
        response = admin.get(page)
        assert response.status_code == 200, page
        assert_escaped(response, expect_shown=not page.endswith("/delete"))  # it names the user only
    for bad in (f"/admin/audit-logs/?status={XSS}", f"/admin/audit-logs/errors?severity={XSS}",
                f"/admin/audit-logs/?{XSS}=1"):
        response = admin.get(bad)
        assert response.status_code == 422, bad
        assert_escaped(response, expect_shown=False)


# -- CR/LF in a username: no forged log line, no forged event ---------------------------------

FORGED = "bob\r\nINFO forged"


def test_cr_lf_in_a_username_cannot_forge_a_log_line_or_an_event(app_config, caplog):
    with built_app(app_config, RATELIMIT_ENABLED=True, LOGIN_LIMIT_PER_USERNAME="2 per minute") as app:
        add_user(app, "admin", role="admin")
        client = app.test_client()
        token = csrf_token(client)
        with caplog.at_level(logging.DEBUG):
            statuses = [client.post("/auth/login", data={"username": FORGED, "password": "wrong-password-1",
                                                         "csrf_token": token}).status_code for _ in range(3)]
            rows_actions = audit_actions(app)
        assert statuses == [401, 401, 429]

        # The log: the name reached it (the limiter reports the throttled key), but escaped.
        messages = [record.getMessage() for record in caplog.records]
        assert any("forged" in message for message in messages), messages
        for message in [*messages, caplog.text]:
            assert not re.search(r"[\r\n]\s*INFO forged", message, re.IGNORECASE), message
        assert not any(line.lower().startswith("info forged") for line in caplog.text.splitlines())

        # The audit log: one event per attempt, each on one line.
        assert rows_actions.count("LOGIN_FAILED") == 2 and rows_actions.count("LOGIN_THROTTLED") == 1
        with app.app_context():
            rows = list(db.session.scalars(select(AuditLog).where(AuditLog.action_type.in_(
                ["LOGIN_FAILED", "LOGIN_THROTTLED"]))))
            for row in rows:
                for column in ("description", "username", "path", "user_agent", "resource_id"):
                    value = getattr(row, column) or ""
                    assert "\r" not in value and "\n" not in value, (column, value)
                assert "bob\\x0d\\x0aINFO forged" in row.description
        admin = logged_in(app, "admin")
        export = admin.get("/admin/audit-logs/export?format=ndjson&search=forged")
        lines = export.get_data(as_text=True).splitlines()
        assert len(lines) == 3 and all(json.loads(line)["description"] for line in lines)


# -- SQL and LIKE metacharacters --------------------------------------------------------------

METACHARACTERS = ["'", '"', "';--", "%", "_", "\\", "' OR '1'='1", "1; DROP TABLE audit_logs;--", "%' OR 1=1 --"]
AUDIT_PARAMETERS = ["date_from", "date_to", "user_id", "action_type", "resource_type", "status", "category",
                    "severity", "error_type", "search", "fingerprint", "request_id", "skip", "limit", "cursor"]
AUDIT_ENDPOINTS = ["/api/v1/audit-logs/", "/api/v1/audit-logs/errors", "/api/v1/audit-logs/export",
                   "/admin/audit-logs/", "/admin/audit-logs/errors", "/admin/audit-logs/export"]
LITERALS = ["100% done", "100 percent done", "file_a saved", "fileXa saved", "back\\slash", "quote's here",
            'double"quote', "semi;--colon"]


def test_sql_and_like_metacharacters_in_every_filter_are_harmless(app, admin_id):
    insert_events(app, [event(f"meta {text_}") for text_ in LITERALS])
    token = make_token(app, admin_id)
    admin = logged_in(app, "admin")
    answers = {}
    for endpoint in AUDIT_ENDPOINTS:
        client_headers = {"headers": bearer(token)} if endpoint.startswith("/api/") else {}
        client = app.test_client() if client_headers else admin
        for parameter in AUDIT_PARAMETERS:
            for value in METACHARACTERS:
                response = client.get(endpoint, query_string={parameter: value}, **client_headers)
                response.get_data()  # an export streams: read it to the end
                response.close()
                answers[(endpoint, parameter, value)] = response.status_code
    for endpoint, query in [("/api/v1/users/", "search"), ("/api/v1/users/", "skip"), ("/admin/users/", "q"),
                            ("/admin/users/", "page"), ("/admin/users/", "per_page")]:
        for value in METACHARACTERS:
            if endpoint.startswith("/api/"):
                response = app.test_client().get(endpoint, query_string={query: value}, headers=bearer(token))
            else:
                response = admin.get(endpoint, query_string={query: value})
            answers[(endpoint, query, value)] = response.status_code
    broken = {key: status for key, status in answers.items() if not (200 <= status < 300 or 400 <= status < 500)}
    assert broken == {}

    # Wildcards and quotes match only themselves, in the API, the viewer and the export.
    expected = {"%": ["100% done"], "_": ["file_a saved"], "\\": ["back\\slash"], "'": ["quote's here"],
                '"': ['double"quote'], ";--": ["semi;--colon"], "% d": ["100% done"]}
    for search, found in expected.items():
        wanted = sorted(f"meta {f}" for f in found)  # (other events, e.g. the token's, may match too)
        api = app.test_client().get("/api/v1/audit-logs/", query_string={"search": search}, headers=bearer(token))
        assert sorted(i["description"] for i in api.json["data"]["items"] if i["description"].startswith("meta ")) == \
            wanted, search
        export = admin.get("/admin/audit-logs/export", query_string={"format": "json", "search": search})
        assert sorted(i["description"] for i in export.json if i["description"].startswith("meta ")) == wanted, search
        viewer = html.unescape(admin.get("/admin/audit-logs/", query_string={"search": search}).get_data(as_text=True))
        for literal in LITERALS:
            assert (f"meta {literal}" in viewer) == (literal in found), (search, literal)
    users = app.test_client().get("/api/v1/users/", query_string={"search": "%"}, headers=bearer(token))
    assert users.json["data"]["total"] == 0  # no username, email or name contains a literal %
    with app.app_context():  # and nothing was dropped along the way
        assert db.session.scalar(select(db.func.count()).select_from(AuditLog)) > len(LITERALS)


# -- a canary password is never stored, never logged ------------------------------------------

CANARY = "Kanarie-7Qx9"


def dump_database(app: Flask) -> str:
    """Every column of every row of every table, as text."""
    with app.app_context():
        names = inspect(db.engine).get_table_names()
        assert "audit_logs" in names and "users" in names
        parts = []
        for name in names:
            for row in db.session.execute(text(f'SELECT * FROM "{name}"')):
                parts.extend(json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
                             for value in row)
        return "\n".join(parts)


def test_a_canary_password_appears_nowhere_in_the_database_or_the_log(app, admin_id, make_user, caplog):
    caplog.set_level(logging.DEBUG)
    responses = []
    admin = logged_in(app, "admin")
    token = make_token(app, admin_id)
    visitor = app.test_client()
    # Failed logins: a known user with a wrong password, an unknown user.
    responses.append(login(visitor, "admin", f"{CANARY}-wrong"))
    responses.append(login(visitor, "ghost", f"{CANARY}-ghost"))
    # Creation: the HTML form (once refused for a mismatched confirmation, once accepted) and the API.
    form = {"email": "carol@example.com", "full_name": "Carol", "role": "user", "status": "active", "is_active": "y"}
    responses.append(form_post(admin, "/admin/users/new", {**form, "username": "carol",
                                                           "password": f"{CANARY}-1", "confirm": f"{CANARY}-x"}))
    responses.append(form_post(admin, "/admin/users/new", {**form, "username": "carol",
                                                           "password": f"{CANARY}-1", "confirm": f"{CANARY}-1"}))
    responses.append(app.test_client().post("/api/v1/users/", headers=bearer(token), json={
        "username": "dave", "email": "dave@example.com", "password": f"{CANARY}-2"}))
    assert [r.status_code for r in responses] == [401, 401, 400, 302, 201]
    # A successful login, a refused and an accepted password change.
    carol = logged_in(app, "carol", f"{CANARY}-1")
    responses.append(form_post(carol, "/auth/password", {"current_password": f"{CANARY}-not-it",
                                                          "new_password": f"{CANARY}-3", "confirm": f"{CANARY}-3"}))
    responses.append(form_post(carol, "/auth/password", {"current_password": f"{CANARY}-1",
                                                          "new_password": f"{CANARY}-3", "confirm": f"{CANARY}-3"}))
    # Admin resets: the HTML form and the API; a password in a query string.
    with app.app_context():
        carol_id = db.session.scalar(select(User.id).where(User.username == "carol"))
        dave_id = db.session.scalar(select(User.id).where(User.username == "dave"))
    responses.append(form_post(admin, f"/admin/users/{carol_id}/password",
                               {"password": f"{CANARY}-4", "confirm": f"{CANARY}-4"}, token_url=f"/admin/users/{carol_id}"))
    responses.append(app.test_client().post(f"/api/v1/users/{dave_id}/password", headers=bearer(token),
                                            json={"password": f"{CANARY}-5"}))
    responses.append(admin.get(f"/admin/audit-logs/?password={CANARY}-6"))
    assert [r.status_code for r in responses[5:]] == [400, 302, 302, 200, 422]
    assert login(app.test_client(), "carol", f"{CANARY}-4").status_code == 302
    assert app.extensions["audit_writer"].flush()

    stored = dump_database(app)
    assert "LOGIN_FAILED" in stored and "PASSWORD_CHANGE" in stored  # the dump does hold the events
    assert CANARY.lower() not in stored.lower()
    assert CANARY.lower() not in caplog.text.lower()
    assert not any(CANARY.lower() in r.getMessage().lower() for r in caplog.records)
    for response in responses:
        assert CANARY.lower() not in response.get_data(as_text=True).lower(), response.request.path
    for path in Path(app.config["AUDIT_DATA_DIR"]).rglob("*"):  # the spool and chain checkpoints
        if path.is_file():
            assert CANARY.lower() not in path.read_text(errors="replace").lower(), path


# -- access control: every audit and user route, every method --------------------------------

PROTECTED_PREFIXES = ("/admin/audit-logs", "/api/v1/audit-logs", "/admin/users", "/api/v1/users", "/admin/streams",
                      "/api/v1/streams", "/admin/alerts", "/admin/alert-rules", "/api/v1/alerts", "/api/v1/alert-rules",
                      "/admin/saved-views", "/api/v1/saved-views")
#: Route arguments that differ per endpoint (the actions each accepts).
ENDPOINT_VALUES = {"alerts.act_on_alert": {"action": "acknowledge"}, "alerts.act_on_rule": {"action": "update"},
                   "streams.act": {"action": "pause"}}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def protected_routes(app: Flask, values: dict) -> list[tuple[str, str]]:
    adapter = app.url_map.bind("localhost")
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PROTECTED_PREFIXES):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                given = {**values, **ENDPOINT_VALUES.get(rule.endpoint, {})}
                routes.append((method, adapter.build(rule.endpoint, {k: given[k] for k in rule.arguments},
                                                     method=method)))
    return routes


def snapshot(app: Flask) -> dict:
    """Users, tokens and legal holds, every column but the last-use times (which reading with a token or logging in
    moves)."""
    with app.app_context():
        out = {}
        for model, skip in ((User, "last_login_at"), (ApiToken, "last_used_at"), (LegalHold, None)):
            columns = [c for c in model.__table__.columns if c.name != skip]
            out[model.__tablename__] = [tuple(r) for r in db.session.execute(select(*columns).order_by(columns[0]))]
        return out


def test_a_non_admin_cannot_reach_any_audit_or_user_route_by_any_method(app, admin_id, make_user):
    alice_id = make_user("alice")
    admin_token, alice_token = make_token(app, admin_id, "admin-token"), make_token(app, alice_id)
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == admin_id))
    [log_id] = insert_events(app, [event("an event")])
    with app.app_context():
        hold_id = add_hold(None, utcnow() - timedelta(days=2), utcnow(), "Case 1").id
        db.session.commit()
    routes = protected_routes(app, {"user_id": admin_id, "log_id": log_id, "token_id": token_id, "stream_id": 1,
                                    "alert_id": 1, "rule_id": 1, "view_id": 1, "hold_id": hold_id,
                                    "request_id": 1})
    assert len(routes) >= 45, routes
    assert {"/admin/audit-logs/export", "/api/v1/audit-logs/export", "/admin/audit-logs/integrity/verify",
            "/api/v1/streams/", "/admin/alerts/1/acknowledge", "/api/v1/alert-rules/1"} <= {url for _, url in routes}
    body = {"username": "hijack", "email": "hijack@example.com", "password": "hijack-Passw0rd", "role": "admin",
            "status": "suspended", "name": "stolen"}
    alice = logged_in(app, "alice")
    alice_csrf = csrf_token(alice, "/auth/password")
    anonymous = app.test_client()
    anonymous_csrf = csrf_token(anonymous)
    before, actions_before = snapshot(app), len(audit_actions(app))
    for method, url in routes:
        api = url.startswith("/api/")
        form = {**body, "csrf_token": alice_csrf}
        # A logged-in non-admin (with a valid CSRF token, so that only the role can stop it): 403.
        response = (alice.open(url, method=method, json=body, headers={"X-CSRFToken": alice_csrf}) if api
                    else alice.open(url, method=method, data=form))
        assert response.status_code == 403, (method, url, response.status_code)
        # The same user with an API token: 403 (an HTML form posted with a token alone fails CSRF first: 400).
        response = app.test_client().open(url, method=method, headers=bearer(alice_token),
                                          **({"json": body} if api else {"data": body}))
        expected = {403} if api or method not in UNSAFE else {400, 403}
        assert response.status_code in expected, (method, url, response.status_code)
        # Anonymous: 401 from the API, the login page from HTML.
        response = (anonymous.open(url, method=method, json=body) if api
                    else anonymous.open(url, method=method, data={**body, "csrf_token": anonymous_csrf}))
        if api:
            assert response.status_code == 401, (method, url)
            assert response.json["success"] is False and "items" not in json.dumps(response.json)
        else:
            assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login"), (method, url)

    assert snapshot(app) == before
    added = audit_actions(app)[actions_before:]
    assert set(added) <= {"REQUEST", "PERMISSION_DENIED", "LOGIN", "TOKEN_USED"}, set(added)
    assert added.count("PERMISSION_DENIED") >= 2 * len(routes) - sum(1 for m, u in routes if m in UNSAFE
                                                                     and not u.startswith("/api/"))
    # The admin's token still works: the refusals were about the role, not a broken route.
    assert app.test_client().get("/api/v1/audit-logs/", headers=bearer(admin_token)).status_code == 200


# -- CSRF on every state-changing form --------------------------------------------------------

FORM_DATA = {
    "auth.login": {"username": "admin", "password": PASSWORD},
    "auth.password": {"current_password": PASSWORD, "new_password": "hijacked-Passw0rd", "confirm": "hijacked-Passw0rd"},
    "auth.preferences": {"timezone": "Asia/Tokyo"},
    "audit.add_hold": {"from": "2026-01-01", "to": "2026-01-31", "reason": "forged"},
    "users.create_user": {"username": "mallory", "email": "mallory@example.com", "full_name": "", "role": "admin",
                          "status": "active", "is_active": "y", "password": "hijacked-Passw0rd",
                          "confirm": "hijacked-Passw0rd"},
    "users.edit_user": {"username": "renamed", "email": "renamed@example.com", "full_name": "x", "role": "admin",
                        "timezone": "Asia/Tokyo"},
    "users.change_status": {"status": "suspended"},
    "users.reset_password": {"password": "hijacked-Passw0rd", "confirm": "hijacked-Passw0rd"},
    "users.create_token": {"name": "stolen"},
}


def test_every_state_changing_form_requires_the_csrf_token(app, admin_id, make_user):
    alice_id = make_user("alice")
    make_token(app, alice_id)
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == alice_id))
    adapter = app.url_map.bind("localhost")
    values = {"user_id": alice_id, "token_id": token_id, "log_id": 1, "stream_id": 1, "alert_id": 1, "rule_id": 1,
              "view_id": 1, "hold_id": 1, "request_id": 1, "action": "remove"}
    forms = [(rule.endpoint, adapter.build(rule.endpoint, {k: {**values, **ENDPOINT_VALUES.get(rule.endpoint, {})}[k]
                                                           for k in rule.arguments}, method="POST"))
             for rule in app.url_map.iter_rules()
             if "POST" in rule.methods and not rule.rule.startswith(("/api/", "/static/"))]
    assert len(forms) >= 12, forms
    assert {"/auth/login", "/auth/logout", "/auth/password", "/admin/audit-logs/integrity/verify"} <= {u for _, u in forms}
    admin = logged_in(app, "admin")
    before, actions_before = snapshot(app), len(audit_actions(app))
    for endpoint, url in forms:
        for token in (None, "forged-token"):
            data = {**FORM_DATA.get(endpoint, {}), **({"csrf_token": token} if token else {})}
            response = admin.post(url, data=data)
            assert response.status_code == 400, (url, token, response.status_code)
            assert "security token is missing or wrong" in html.unescape(response.get_data(as_text=True)), url
    assert snapshot(app) == before
    assert set(audit_actions(app)[actions_before:]) <= {"REQUEST"}
    assert admin.get("/admin/users/").status_code == 200  # still logged in: the logout post was refused too


def test_pages_and_api_answers_are_never_cached(admin_client):
    for url in ("/admin/audit-logs/", "/api/v1/me", "/auth/login"):
        assert admin_client.get(url).headers["Cache-Control"] == "no-store", url
    assert "no-store" not in admin_client.get("/static/css/app.css").headers.get("Cache-Control", "")
