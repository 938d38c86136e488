"""The global exception handler: every unhandled exception is recorded, and the user still gets a proper
500 answer (an HTML page, or the JSON envelope under /api/), even when recording fails."""

from __future__ import annotations

import pytest

from audit_portal.audit.write.context import REQUEST_ID_HEADER
from tests.conftest import PASSWORD

CASES = [
    ("zero", "ZeroDivisionError", "ERROR", "division by zero"),
    ("value", "ValueError", "ERROR", "bad value"),
    ("memory", "MemoryError", "CRITICAL", ""),
    ("system", "SystemError", "CRITICAL", "interpreter in trouble"),
    ("validation", "marshmallow.exceptions.ValidationError", "WARNING", "{'email': ['Not a valid email address.']}"),
]


@pytest.mark.parametrize(("kind", "error_type", "severity", "message"), CASES)
def test_an_unhandled_exception_is_recorded_with_its_details(client, audit_rows, kind, error_type, severity, message):
    response = client.post(f"/_test/boom/{kind}", headers={"User-Agent": "Probe/4"})
    assert response.status_code == 500
    [row] = audit_rows(action_type="EXCEPTION_RAISED")
    assert (row.error_type, row.severity, row.status, row.category) == (error_type, severity, "ERROR", "errors")
    assert row.description == f"{error_type}: {message}"
    assert row.stack_trace.startswith("Traceback (most recent call last):")
    assert "tests/audit/conftest.py" in row.stack_trace
    assert row.stack_trace.rstrip().splitlines()[-1].startswith(error_type)
    assert row.fingerprint and len(row.fingerprint) == 32
    assert (row.http_method, row.path, row.status_code) == ("POST", f"/_test/boom/{kind}", 500)
    assert (row.ip_address, row.user_agent) == ("127.0.0.1", "Probe/4")
    assert row.request_id == response.headers[REQUEST_ID_HEADER]


def test_the_error_event_names_the_logged_in_user(admin_client, admin_id, audit_rows):
    admin_client.post("/_test/boom/zero")
    [row] = audit_rows(action_type="EXCEPTION_RAISED")
    assert (row.user_id, row.username) == (admin_id, "admin")


def test_a_browser_gets_an_html_500_page(client):
    response = client.get("/_test/boom/zero")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "500" in body and "it has been recorded" in body
    assert "ZeroDivisionError" not in body and "Traceback" not in body  # no internals for the visitor


def test_an_api_client_gets_the_json_envelope(client):
    response = client.get("/api/v1/_test/boom/zero")
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert response.json == {"success": False, "message": "An unexpected error occurred; it has been recorded.",
                             "code": 500, "status": "Internal Server Error", "errors": {}}


def test_the_same_error_at_the_same_place_has_one_fingerprint(client, audit_rows):
    client.post("/_test/boom/zero")
    client.get("/api/v1/_test/boom/zero")
    client.post("/_test/boom/value")
    zero, zero_again, value = audit_rows(action_type="EXCEPTION_RAISED")
    assert zero.fingerprint == zero_again.fingerprint != value.fingerprint


def test_http_exceptions_keep_their_status_and_are_not_recorded_as_exceptions(client, audit_rows):
    assert client.get("/_test/boom/notfound").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert client.delete("/healthz").status_code == 405
    assert client.get("/api/v1/no-such-endpoint").json["code"] == 404
    assert audit_rows(action_type="EXCEPTION_RAISED") == []


def test_secrets_in_an_exception_message_are_redacted(client, audit_rows):
    client.post("/_test/boom/secret", data={"password": PASSWORD})
    [row] = audit_rows(action_type="EXCEPTION_RAISED")
    assert row.description == "ValueError: could not process payload password=[REDACTED]"
    assert PASSWORD not in row.stack_trace + row.description + str(row.event_metadata)


# -- recording fails ---------------------------------------------------------------------------


def test_the_user_gets_the_500_page_when_the_event_cannot_be_queued(client, writer, monkeypatch, spooled):
    def broken(event):
        raise RuntimeError("writer is gone")

    monkeypatch.setattr(writer, "submit", broken)
    response = client.get("/_test/boom/zero")
    assert response.status_code == 500 and "it has been recorded" in response.get_data(as_text=True)
    assert "EXCEPTION_RAISED" in [event["action_type"] for event in spooled()]  # kept for replay


def test_the_user_gets_the_500_page_when_nothing_can_record(client, writer, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(writer, "submit", broken)
    monkeypatch.setattr(writer.spool, "append", broken)
    assert client.get("/_test/boom/memory").status_code == 500
    assert client.get("/api/v1/_test/boom/zero").json["code"] == 500


def test_the_user_gets_the_500_page_while_the_database_is_down(client, writer, database_outage, spooled, audit_rows):
    response = client.post("/_test/boom/zero")
    assert response.status_code == 500
    assert writer.flush()
    assert {event["action_type"] for event in spooled()} == {"EXCEPTION_RAISED", "REQUEST"}
    database_outage()  # the database is back
    assert writer.replay_spool() == 2
    [row] = audit_rows(action_type="EXCEPTION_RAISED")
    assert row.error_type == "ZeroDivisionError" and row.request_id == response.headers[REQUEST_ID_HEADER]
