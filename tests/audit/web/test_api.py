"""The audit log API: authorization, filters, paging, errors endpoint, export, and bad input."""

import csv
import io
import json
from datetime import timedelta

import pytest

from audit_portal.audit.read.schemas import ERRORS_ONLY
from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from tests.api_helpers import bearer, make_token

ENDPOINTS = ["/api/v1/audit-logs/", "/api/v1/audit-logs/errors", "/api/v1/audit-logs/export",
             "/api/v1/audit-logs/1"]


@pytest.fixture
def tokens(app, make_user, admin_id):
    return {"admin": make_token(app, admin_id), "user": make_token(app, make_user("bob"))}


def insert_events(app, events):
    with app.app_context(), db.engine.begin() as conn:
        insert_ignoring_duplicates(conn, events)


def event(action=ActionType.UPDATE, resource=ResourceType.USER, description="something", minutes_ago=0, **kw):
    return build_event(action, resource, kw.pop("resource_id", None), description,
                       timestamp=utcnow() - timedelta(minutes=minutes_ago), **kw)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_authorization_matrix_by_token(app, client, tokens, path):
    insert_events(app, [event()])
    assert client.get(path).status_code == 401
    assert client.get(path, headers=bearer(tokens["user"])).status_code == 403
    assert client.get(path, headers=bearer(tokens["admin"])).status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_authorization_matrix_by_session(app, client, auth, make_user, admin_id, path):
    insert_events(app, [event()])
    make_user("bob")
    assert client.get(path).status_code == 401
    auth.login("bob")
    assert client.get(path).status_code == 403
    auth.logout()
    auth.login("admin")
    assert client.get(path).status_code == 200


def test_non_admin_denial_is_audited(app, client, tokens, audit_rows):
    client.get("/api/v1/audit-logs/", headers=bearer(tokens["user"]))
    [denied] = audit_rows(action_type="PERMISSION_DENIED")
    assert denied.username == "bob" and denied.status == Status.FAILURE.value


def test_list_envelope_items_and_helpers(app, client, tokens):
    insert_events(app, [event(description="zz older", minutes_ago=5, username="carol"),
                        event(action=ActionType.LOGIN_FAILED, resource=ResourceType.SESSION, status=Status.FAILURE,
                              description="zz newer")])
    body = client.get("/api/v1/audit-logs/?search=ZZ", headers=bearer(tokens["admin"])).json
    assert body["success"] is True and body["message"] is None
    data = body["data"]
    assert data["total"] == 2 and data["skip"] == 0 and data["limit"] == 50
    newer, older = data["items"]
    assert newer["description"] == "zz newer" and newer["status_color"] == "red" and newer["category"] == "authentication"
    assert older["status_color"] == "green" and older["readable_description"] == "carol: zz older"
    assert older["category"] == "user_management"


def test_filters_paging_and_totals(app, client, tokens):
    insert_events(app, [event(description=f"e{i}", minutes_ago=i, status=Status.FAILURE if i % 3 == 0 else Status.SUCCESS)
                        for i in range(30)])
    headers = bearer(tokens["admin"])
    first = client.get("/api/v1/audit-logs/?status=failure&limit=4", headers=headers).json["data"]
    assert first["total"] == 10
    assert [i["description"] for i in first["items"]] == ["e0", "e3", "e6", "e9"]
    second = client.get("/api/v1/audit-logs/?status=FAILURE&limit=4&skip=4", headers=headers).json["data"]
    assert [i["description"] for i in second["items"]] == ["e12", "e15", "e18", "e21"]


def test_filter_by_username_and_ip_address(app, client, tokens):
    """``username`` finds the actor's events and the failed logins that typed the name; ``ip_address`` one client's
    events, however the address is spelt."""
    insert_events(app, [
        event(description="by carol", username="carol", ip_address="2001:db8::9", minutes_ago=3),
        event(action=ActionType.LOGIN_FAILED, resource=ResourceType.SESSION, status=Status.FAILURE, minutes_ago=2,
              description="Failed login for 'carol': wrong password", ip_address="198.51.100.4",
              metadata={"attempted_username": "carol", "reason": "wrong password", "known_user": True}),
        event(description="by dave", username="dave", ip_address="198.51.100.4", minutes_ago=1),
    ])
    headers = bearer(tokens["admin"])

    def found(query):
        data = client.get(f"/api/v1/audit-logs/?{query}", headers=headers).json["data"]
        assert data["total"] == len(data["items"])
        return [item["description"] for item in data["items"]]

    assert found("username=carol") == ["Failed login for 'carol': wrong password", "by carol"]
    assert found("username=CAROL") == []
    assert found("ip_address=198.51.100.4") == ["by dave", "Failed login for 'carol': wrong password"]
    assert found("ip_address=2001:DB8:0:0::9") == ["by carol"]
    assert found("ip_address=198.51.100.4&username=carol") == ["Failed login for 'carol': wrong password"]


def test_errors_endpoint_only_errors_with_stack_traces_and_limits(app, client, tokens):
    insert_events(app, [event(action=ActionType.EXCEPTION_RAISED, resource=ResourceType.SYSTEM, status=Status.ERROR,
                              severity="CRITICAL", error_type="MemoryError", stack_trace="Traceback...\nMemoryError"),
                        event(action=ActionType.EXCEPTION_RAISED, resource=ResourceType.SYSTEM, status=Status.ERROR,
                              severity="WARNING", error_type="ValidationError", stack_trace="Traceback...")]
                  + [event() for _ in range(3)])
    headers = bearer(tokens["admin"])
    data = client.get("/api/v1/audit-logs/errors", headers=headers).json["data"]
    assert data["total"] == 2 and data["limit"] == 50
    assert all(item["stack_trace"] for item in data["items"])
    critical = client.get("/api/v1/audit-logs/errors?severity=critical", headers=headers).json["data"]
    assert [i["error_type"] for i in critical["items"]] == ["MemoryError"]
    assert critical["items"][0]["severity_color"] == "red"
    by_type = client.get("/api/v1/audit-logs/errors?error_type=ValidationError", headers=headers).json["data"]
    assert by_type["total"] == 1
    assert client.get("/api/v1/audit-logs/errors?limit=200", headers=headers).status_code == 200
    too_many = client.get("/api/v1/audit-logs/errors?limit=201", headers=headers)
    assert too_many.status_code == 422 and "limit" in too_many.json["errors"]


def test_get_one_event(app, client, tokens):
    insert_events(app, [event(description="the one", metadata={"old": {"a": 1}, "new": {"a": 2}})])
    headers = bearer(tokens["admin"])
    listed = client.get("/api/v1/audit-logs/?search=the one", headers=headers).json["data"]["items"][0]
    body = client.get(f"/api/v1/audit-logs/{listed['id']}", headers=headers).json
    assert body["data"]["metadata"] == {"old": {"a": 1}, "new": {"a": 2}}
    assert body["data"]["event_id"] == listed["event_id"]


@pytest.mark.parametrize("path, status, field", [
    ("/api/v1/audit-logs/?status=maybe", 422, "status"),
    ("/api/v1/audit-logs/?action_type=EXPLODE", 422, "action_type"),
    ("/api/v1/audit-logs/?date_from=yesterday", 422, "date_from"),
    ("/api/v1/audit-logs/?date_from=2026-02-01&date_to=2026-01-01", 422, "date_from"),
    ("/api/v1/audit-logs/?skip=-1", 422, "skip"),
    ("/api/v1/audit-logs/?limit=501", 422, "limit"),
    ("/api/v1/audit-logs/?limit=0", 422, "limit"),
    ("/api/v1/audit-logs/?colour=red", 422, "colour"),
    ("/api/v1/audit-logs/?user_id=abc", 422, "user_id"),
    ("/api/v1/audit-logs/?user_id=99999999999999999999999", 422, "user_id"),
    ("/api/v1/audit-logs/?ip_address=203.0.113.256", 422, "ip_address"),
    ("/api/v1/audit-logs/errors?ip_address=example.com", 422, "ip_address"),
    ("/api/v1/audit-logs/export?ip_address=10.0.0", 422, "ip_address"),
    ("/api/v1/audit-logs/?username=" + "x" * 65, 422, "username"),
    ("/api/v1/audit-logs/export?format=xlsx", 422, "format"),
    ("/api/v1/audit-logs/abc", 404, None),
    ("/api/v1/audit-logs/99999999999999999999999", 404, None),
    ("/api/v1/audit-logs/12345", 404, None),
    ("/api/v1/audit-logs/nope/deeper", 404, None),
])
def test_bad_input_is_a_4xx_envelope_naming_the_parameter(client, tokens, path, status, field):
    response = client.get(path, headers=bearer(tokens["admin"]))
    assert response.status_code == status
    body = response.json
    assert body["success"] is False and body["code"] == status and body["message"]
    if field:
        assert field in body["errors"]
        assert field in body["message"]


@pytest.mark.parametrize("endpoint", ["/api/v1/audit-logs/", "/api/v1/audit-logs/errors", "/api/v1/audit-logs/export"])
@pytest.mark.parametrize("name, value", [("search", "a%00b"), ("error_type", "Zero%00Error"),
                                         ("fingerprint", "0" * 31 + "%00"), ("request_id", "abcdefgh%00"),
                                         ("username", "ad%00min"), ("ip_address", "fe80::1%25eth%00")])
def test_a_nul_in_a_text_filter_is_a_422_naming_it(client, tokens, endpoint, name, value):
    """Found by the fuzz run (tests/test_api_fuzz.py): on PostgreSQL, which refuses NUL in a query, e.g.
    GET /api/v1/audit-logs/errors?fingerprint=...%00... was a 500."""
    response = client.get(f"{endpoint}?{name}={value}", headers=bearer(tokens["admin"]))
    assert response.status_code == 422, response.json
    assert name in response.json["errors"] and "NUL" in response.json["message"]


def test_unknown_enum_message_lists_allowed_values(client, tokens):
    body = client.get("/api/v1/audit-logs/?status=maybe", headers=bearer(tokens["admin"])).json
    assert "SUCCESS, FAILURE, ERROR" in body["message"]


def test_method_not_allowed_is_an_envelope(client, tokens):
    response = client.delete("/api/v1/audit-logs/", headers=bearer(tokens["admin"]))
    assert response.status_code == 405
    assert response.json["code"] == 405 and "GET" in response.headers["Allow"]


def test_export_is_filtered_and_audited(app, client, tokens, audit_rows):
    insert_events(app, [event(description="keep me", status=Status.FAILURE), event(description="not me")])
    headers = bearer(tokens["admin"])
    response = client.get("/api/v1/audit-logs/export?format=csv&status=failure", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-logs_')
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["description"] for r in rows] == ["keep me"]
    as_json = json.loads(client.get("/api/v1/audit-logs/export?format=JSON&status=failure", headers=headers).data)
    assert [r["description"] for r in as_json] == ["keep me"]
    lines = client.get("/api/v1/audit-logs/export?format=ndjson", headers=headers).get_data(as_text=True).splitlines()
    assert {json.loads(line)["description"] for line in lines} >= {"keep me", "not me"}
    exports = audit_rows(action_type="EXPORT")
    assert len(exports) == 3
    assert exports[0].event_metadata["filters"] == {"status": "FAILURE"}
    assert exports[0].event_metadata["row_count"] == 1 and exports[0].is_sensitive


def test_export_over_the_limit_is_refused_whole(app, app_config, client, tokens):
    app.config["AUDIT_EXPORT_MAX_ROWS"] = 2
    insert_events(app, [event() for _ in range(3)])
    response = client.get("/api/v1/audit-logs/export?format=csv", headers=bearer(tokens["admin"]))
    assert response.status_code == 422
    assert "more than the export limit of 2" in response.json["message"]
    assert "Narrow the filters" in response.json["message"]


def test_reading_the_audit_log_is_itself_audited(app, client, tokens, audit_rows):
    client.get("/api/v1/audit-logs/?status=success", headers=bearer(tokens["admin"]))
    [request_event] = audit_rows(action_type="REQUEST", path="/api/v1/audit-logs/?status=success")
    assert request_event.username == "admin" and request_event.status_code == 200


def test_openapi_and_docs_need_no_login(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    paths = spec.json["paths"]
    assert {"/api/v1/audit-logs/", "/api/v1/audit-logs/errors", "/api/v1/audit-logs/export",
            "/api/v1/audit-logs/{log_id}", "/api/v1/users/", "/api/v1/me"} <= set(paths)
    listing = paths["/api/v1/audit-logs/"]["get"]
    assert listing["tags"] == ["Audit Logs"]
    assert "curl" in listing["description"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert {"date_from", "date_to", "user_id", "action_type", "resource_type", "status", "category", "severity",
            "error_type", "search", "fingerprint", "request_id", "ip_address", "username", "skip", "limit"} <= set(params)
    assert params["status"]["schema"]["enum"] == ["SUCCESS", "FAILURE", "ERROR"]
    assert "bearerAuth" in spec.json["components"]["securitySchemes"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"swagger-ui-bundle.js" in docs.data and b"cdn" not in docs.data.lower()


def test_openapi_document_refs_resolve_and_error_statuses_are_documented(client):
    """Every ``$ref`` points at a component that exists (the error responses once named a missing "Error"
    schema), and each operation lists the error statuses it answers (the fuzz run checks them all)."""
    doc = client.get("/api/openapi.json").json

    def refs(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(doc)):
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"unresolved $ref {ref}"
            target = target[part]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":  # the path's own parameters, not an operation
                continue
            codes = set(operation["responses"])
            expected = {"401"} if path == "/api/v1/me" else {"401", "403"}
            if "{" in path:
                expected.add("404")
            if "requestBody" in operation:
                expected |= {"400", "422"}
            assert expected <= codes, (method, path, codes)
            errors = [operation["responses"][code] for code in expected]
            assert all(r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
                       for r in errors), (method, path)


def test_a_parameter_given_twice_is_a_422_not_a_silent_choice(client, tokens):
    response = client.get("/api/v1/audit-logs/?status=SUCCESS&status=bogus", headers=bearer(tokens["admin"]))
    assert response.status_code == 422 and "status" in response.json["errors"]
    assert "given 2 times" in response.json["message"]


@pytest.mark.parametrize("status", ["SUCCESS", "failure"])
def test_the_error_list_refuses_a_status_other_than_error(client, tokens, status):
    """It used to replace any status with ERROR in silence, answering with errors the caller did not ask for."""
    response = client.get(f"/api/v1/audit-logs/errors?status={status}", headers=bearer(tokens["admin"]))
    assert response.status_code == 422
    assert response.json["errors"] == {"status": [ERRORS_ONLY]}


def test_the_error_list_takes_status_error_in_any_case(app, client, tokens):
    insert_events(app, [event(action=ActionType.EXCEPTION_RAISED, resource=ResourceType.SYSTEM, status=Status.ERROR,
                              severity="ERROR", error_type="KeyError"), event()])
    for status in ("ERROR", "error"):
        data = client.get(f"/api/v1/audit-logs/errors?status={status}", headers=bearer(tokens["admin"])).json["data"]
        assert [item["error_type"] for item in data["items"]] == ["KeyError"]


def test_an_unknown_parameter_names_the_ones_that_are_accepted(client, tokens):
    response = client.get("/api/v1/audit-logs/?stauts=ERROR", headers=bearer(tokens["admin"]))
    assert response.status_code == 422
    [message] = response.json["errors"]["stauts"]
    assert message.startswith("Unknown parameter; the parameters are: date_from, date_to, user_id")
    assert "status" in message and "cursor" in message


def test_swagger_ui_shows_a_realistic_event(client):
    """Seed task 11.3: example responses in the API docs. Every field of an item has an example, and they read
    as one error event."""
    schemas = client.get("/api/openapi.json").json["components"]["schemas"]
    item = schemas["AuditLog"]["properties"]
    assert [name for name, prop in item.items() if "example" not in prop] == []
    assert item["action_type"]["example"] in ActionType.values()
    assert item["status"]["example"] == "ERROR" and item["status_color"]["example"] == "orange"
    assert item["severity"]["example"] == "ERROR" and item["severity_color"]["example"] == "orange"
    assert item["stack_trace"]["example"].endswith(f"{item['error_type']['example']}: division by zero\n")
    listing = schemas["AuditLogListResponse"]["properties"]
    assert {name for name, prop in listing.items() if "example" in prop} == {
        "total", "total_is_exact", "skip", "limit", "next_cursor", "tail_token"}
