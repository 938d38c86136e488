"""The request hooks: which requests are recorded, and what a request event carries."""

from __future__ import annotations

import uuid

import pytest

from audit_portal.audit.write.context import REQUEST_ID_HEADER


def _requests(audit_rows) -> list[tuple[str, str]]:
    return [(row.http_method, row.path) for row in audit_rows(action_type="REQUEST")]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_state_changing_requests_are_recorded_anywhere(client, audit_rows, method):
    response = client.open("/_test/probe", method=method)
    assert response.status_code == 201
    [row] = audit_rows(action_type="REQUEST")
    assert (row.http_method, row.path, row.status_code, row.status) == (method, "/_test/probe", 201, "SUCCESS")
    assert (row.resource_type, row.category) == ("REQUEST", "requests")
    assert row.description == f"{method} /_test/probe answered 201"


def test_reads_of_admin_and_auth_pages_are_recorded(admin_client, audit_rows):
    admin_client.get("/admin/users/")
    admin_client.get("/admin/audit-logs/?status=ERROR")
    gets = [path for method, path in _requests(audit_rows) if method == "GET"]
    assert gets == ["/auth/login", "/admin/users/", "/admin/audit-logs/?status=ERROR"]


def test_health_checks_static_files_and_plain_reads_are_not_recorded(client, audit_rows):
    assert client.get("/healthz").status_code == 200
    client.post("/healthz")
    client.get("/static/css/app.css").close()
    client.get("/_test/probe")
    client.get("/")
    assert _requests(audit_rows) == []


def test_the_request_event_records_who_and_from_where(client, auth, admin_id, audit_rows):
    client.environ_base.update(REMOTE_ADDR="203.0.113.5", HTTP_USER_AGENT="Probe/3.1 (audit test)")
    auth.login("admin")
    client.post("/_test/probe")
    [row] = audit_rows(action_type="REQUEST", path="/_test/probe")
    assert (row.user_id, row.username) == (admin_id, "admin")
    assert (row.ip_address, row.user_agent) == ("203.0.113.5", "Probe/3.1 (audit test)")


def test_anonymous_requests_have_no_user(client, audit_rows):
    client.post("/_test/probe")
    [row] = audit_rows(action_type="REQUEST")
    assert row.user_id is None and row.username is None and row.ip_address == "127.0.0.1"


def test_duration_and_status_code_are_recorded(client, audit_rows):
    client.post("/_test/probe?sleep=60")
    client.post("/_test/boom/notfound")
    slow, missing = audit_rows(action_type="REQUEST")
    assert slow.duration_ms >= 60 and slow.status_code == 201
    assert (missing.status_code, missing.status) == (404, "FAILURE")


def test_query_string_secrets_are_redacted_in_the_path(client, audit_rows):
    client.post("/_test/probe?page=2&token=s3cr3t-value&password=hunter2")
    [row] = audit_rows(action_type="REQUEST")
    assert row.path == "/_test/probe?page=2&token=[REDACTED]&password=[REDACTED]"
    assert "s3cr3t" not in row.path + row.description and "hunter2" not in row.path + row.description


def test_every_response_carries_its_request_id(client, audit_rows):
    first = client.post("/_test/probe").headers[REQUEST_ID_HEADER]
    second = client.get("/_test/probe").headers[REQUEST_ID_HEADER]
    assert first and second and first != second
    [row] = audit_rows(action_type="REQUEST")
    assert row.request_id == first
    # Time-ordered UUIDs (version 7), in the standard form: the request_id index grows at its right edge.
    parsed = [uuid.UUID(value) for value in (first, second)]
    assert [str(p) for p in parsed] == [first, second] and {p.version for p in parsed} == {7}
    assert parsed[0].int >> 80 <= parsed[1].int >> 80  # the millisecond timestamp never goes backwards


def test_request_and_error_events_of_one_request_share_its_id(client, audit_rows):
    response = client.post("/_test/boom/zero")
    assert response.status_code == 500
    [request_event] = audit_rows(action_type="REQUEST")
    [error_event] = audit_rows(action_type="EXCEPTION_RAISED")
    assert request_event.request_id == error_event.request_id == response.headers[REQUEST_ID_HEADER]
    assert (request_event.status_code, request_event.status) == (500, "ERROR")


def test_a_client_cannot_choose_its_request_id(client, audit_rows):
    response = client.post("/_test/probe", headers={REQUEST_ID_HEADER: "forged-id-0001"})
    assert response.headers[REQUEST_ID_HEADER] != "forged-id-0001"
    assert audit_rows(action_type="REQUEST")[0].request_id == response.headers[REQUEST_ID_HEADER]


@pytest.mark.settings(TRUSTED_PROXY_COUNT=1)
def test_a_trusted_proxy_alone_does_not_make_the_request_id_trusted(client, audit_rows):
    response = client.post("/_test/probe", headers={REQUEST_ID_HEADER: "proxy-id-0001"})
    assert response.headers[REQUEST_ID_HEADER] != "proxy-id-0001"


@pytest.mark.settings(AUDIT_TRUST_REQUEST_ID=True)
def test_the_request_id_of_a_trusted_proxy_is_kept(client, audit_rows):
    response = client.post("/_test/probe", headers={REQUEST_ID_HEADER: "proxy-id-0001"})
    assert response.headers[REQUEST_ID_HEADER] == "proxy-id-0001"
    assert audit_rows(action_type="REQUEST")[0].request_id == "proxy-id-0001"


# -- client IP and proxies -------------------------------------------------------------------


def _ip_of(client, audit_rows, forwarded_for: str) -> str:
    client.post("/_test/probe", environ_base={"REMOTE_ADDR": "10.0.0.2"}, headers={"X-Forwarded-For": forwarded_for})
    return audit_rows(action_type="REQUEST")[-1].ip_address


def test_x_forwarded_for_is_ignored_without_trusted_proxies(client, audit_rows):
    assert _ip_of(client, audit_rows, "198.51.100.7") == "10.0.0.2"


@pytest.mark.settings(TRUSTED_PROXY_COUNT=1)
def test_x_forwarded_for_is_honoured_through_one_trusted_proxy(client, audit_rows):
    assert _ip_of(client, audit_rows, "198.51.100.7") == "198.51.100.7"
    # A client may send its own X-Forwarded-For; only the entry our proxy appended counts.
    assert _ip_of(client, audit_rows, "1.2.3.4, 198.51.100.8") == "198.51.100.8"
    assert _ip_of(client, audit_rows, "not-an-ip") == "10.0.0.2"


@pytest.mark.settings(TRUSTED_PROXY_COUNT=1)
def test_the_client_ip_is_stored_in_its_canonical_spelling(client, audit_rows):
    assert _ip_of(client, audit_rows, "2001:0DB8:0000::0007") == "2001:db8::7"
    assert _ip_of(client, audit_rows, "::FFFF:192.0.2.9") == "::ffff:192.0.2.9"  # not ::ffff:c000:209


@pytest.mark.settings(TRUSTED_PROXY_COUNT=2)
def test_x_forwarded_for_through_two_trusted_proxies(client, audit_rows):
    assert _ip_of(client, audit_rows, "6.6.6.6, 198.51.100.9, 10.0.0.1") == "198.51.100.9"


# -- settings --------------------------------------------------------------------------------


@pytest.mark.settings(AUDIT_ENABLED=False)
def test_nothing_is_recorded_when_auditing_is_off(client, audit_rows):
    response = client.post("/_test/probe")
    assert response.status_code == 201 and response.headers[REQUEST_ID_HEADER]
    client.post("/_test/boom/zero")
    assert audit_rows() == []


@pytest.mark.settings(AUDIT_REQUEST_METHODS="DELETE")
def test_the_recorded_methods_are_a_setting(client, audit_rows):
    client.post("/_test/probe")
    client.delete("/_test/probe")
    assert _requests(audit_rows) == [("DELETE", "/_test/probe")]


@pytest.mark.settings(AUDIT_REQUEST_INCLUDE_PREFIXES="/_test/")
def test_included_prefixes_are_recorded_for_every_method(client, audit_rows):
    client.get("/_test/probe")
    client.get("/auth/login")  # no longer included
    assert _requests(audit_rows) == [("GET", "/_test/probe")]


@pytest.mark.settings(AUDIT_REQUEST_EXCLUDE_PREFIXES="/_test/probe")
def test_excluded_prefixes_are_never_recorded(client, audit_rows):
    client.post("/_test/probe")
    client.post("/healthz")  # no longer excluded
    assert _requests(audit_rows) == [("POST", "/healthz")]


def test_a_request_whose_event_cannot_be_queued_still_gets_its_response(client, writer, monkeypatch, spooled):
    def broken(event):
        raise RuntimeError("queue is gone")

    monkeypatch.setattr(writer, "submit", broken)
    assert client.post("/_test/probe").status_code == 201
    [event] = spooled()  # kept for replay
    assert (event["action_type"], event["path"]) == ("REQUEST", "/_test/probe")
