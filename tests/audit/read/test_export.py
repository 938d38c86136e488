"""Exports are complete, exact and harmless in a spreadsheet."""

import csv
import io
import json
from datetime import datetime, timedelta

import pytest

from audit_portal.audit.read.export import CSV_COLUMNS
from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from tests.api_helpers import bearer, make_token

NASTY = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR", "\nLF", 'a","=1+2', 'quote " and, comma',
         "line one\nline two", "Grüße, 東京 🚀"]


@pytest.fixture
def token(app, admin_id):
    return make_token(app, admin_id)


@pytest.fixture
def seeded(app):
    now = utcnow()
    events = [build_event(ActionType.UPDATE, ResourceType.USER, str(i), text, timestamp=now - timedelta(seconds=i),
                          metadata={"old": {"note": text}, "new": {"note": "x"}}, user_agent_=text,
                          status=Status.FAILURE if i % 2 else Status.SUCCESS)
              for i, text in enumerate(NASTY)]
    events.append(build_event(ActionType.REQUEST, ResourceType.REQUEST, None, "GET / answered 200",
                              timestamp=now - timedelta(minutes=5), http_method="GET", path="/", status_code=200,
                              duration_ms=17))
    with app.app_context(), db.engine.begin() as conn:
        insert_ignoring_duplicates(conn, events)
    return events


def _csv(client, token, query=""):
    response = client.get(f"/api/v1/audit-logs/export?format=csv{query}", headers=bearer(token))
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


def _api_items(client, token, query=""):
    return client.get(f"/api/v1/audit-logs/?limit=500{query}", headers=bearer(token)).json["data"]["items"]


def test_csv_has_every_field_and_matches_the_list_api(client, token, seeded):
    # Only the seeded events: the calls themselves add REQUEST and EXPORT events in the background.
    rows = _csv(client, token, "&action_type=UPDATE")
    items = _api_items(client, token, "&action_type=UPDATE")
    assert len(rows) == len(NASTY)
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert [int(r["id"]) for r in rows] == [i["id"] for i in items]
    for row, item in zip(rows, items, strict=True):
        assert datetime.fromisoformat(row["timestamp"]) == datetime.fromisoformat(item["timestamp"])
        assert row["event_id"] == item["event_id"] and row["action_type"] == item["action_type"]
        expected = item["description"]
        assert row["description"] in (expected, "'" + expected)
        if item["metadata"] is not None:
            assert json.loads(row["metadata"].lstrip("'")) == item["metadata"]


def test_formula_characters_are_neutralised_and_cells_stay_cells(client, token, seeded):
    rows = {r["resource_id"]: r for r in _csv(client, token, "&action_type=UPDATE")}
    assert len(rows) == len(NASTY)
    for row in rows.values():
        for column in CSV_COLUMNS:
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r", "\n")), (column, row[column])
    assert rows["0"]["description"] == "'=1+2"
    assert rows["3"]["user_agent"] == "'@cmd"
    assert rows["7"]["description"] == 'a","=1+2'
    assert rows["8"]["description"] == 'quote " and, comma'
    assert rows["10"]["description"] == "Grüße, 東京 🚀"


def test_newlines_inside_values_survive_as_one_cell(client, token, seeded):
    rows = {r["resource_id"]: r for r in _csv(client, token, "&action_type=update")}
    assert json.loads(rows["9"]["metadata"])["old"]["note"] == "line one\nline two"


def test_numbers_stay_numbers(client, token, seeded):
    raw = client.get("/api/v1/audit-logs/export?format=csv&action_type=request", headers=bearer(token)).get_data(
        as_text=True)
    line = raw.splitlines()[1]
    assert ",200,17" in line and "'200" not in line


def test_json_and_ndjson_match_the_list_api(client, token, seeded):
    # Only the seeded events: the calls themselves add REQUEST and EXPORT events in the background.
    items = _api_items(client, token, "&action_type=UPDATE")
    assert len(items) == len(NASTY)
    as_json = json.loads(client.get("/api/v1/audit-logs/export?format=json&action_type=UPDATE",
                                    headers=bearer(token)).data)
    lines = client.get("/api/v1/audit-logs/export?format=ndjson&action_type=UPDATE",
                       headers=bearer(token)).get_data(as_text=True)
    assert as_json == items
    assert [json.loads(line) for line in lines.splitlines()] == items


@pytest.mark.parametrize("query, expected", [
    ("&status=failure", 5), ("&status=success", 7), ("&action_type=request", 1), ("&search=line", 1),
    ("&resource_type=USER", 11), ("&category=requests", 1),
])
def test_every_filter_applies_to_the_export(client, token, seeded, query, expected):
    # Only the seeded events: the test's own API calls add REQUEST events (under /api/) in the background.
    rows = [r for r in _csv(client, token, query)
            if r["action_type"] == "UPDATE" or (r["action_type"] == "REQUEST" and r["path"] == "/")]
    assert len(rows) == expected


def test_date_filters_apply_to_the_export_and_name_the_file(client, token, seeded):
    today = utcnow().date().isoformat()
    response = client.get(f"/api/v1/audit-logs/export?format=csv&date_from={today}&date_to={today}",
                          headers=bearer(token))
    assert response.status_code == 200
    assert today.replace("-", "") in response.headers["Content-Disposition"]
    tomorrow = (utcnow().date() + timedelta(days=1)).isoformat()
    empty = _csv(client, token, f"&date_from={tomorrow}")
    assert empty == []


def test_the_export_keeps_to_one_username_or_ip_address(app, client, token):
    now = utcnow()
    with app.app_context(), db.engine.begin() as conn:
        insert_ignoring_duplicates(conn, [
            build_event(ActionType.LOGIN_FAILED, ResourceType.SESSION, None, "Failed login for 'erin': wrong password",
                        timestamp=now - timedelta(seconds=3), status=Status.FAILURE, ip_address="198.51.100.77",
                        metadata={"attempted_username": "erin", "reason": "wrong password"}),
            build_event(ActionType.LOGIN, ResourceType.SESSION, None, "erin logged in", username="erin",
                        timestamp=now - timedelta(seconds=2), ip_address="2001:db8::77"),
            build_event(ActionType.LOGIN, ResourceType.SESSION, None, "frank logged in", username="frank",
                        timestamp=now - timedelta(seconds=1), ip_address="198.51.100.77"),
        ])
    assert [r["description"] for r in _csv(client, token, "&username=erin")] == [
        "erin logged in", "Failed login for 'erin': wrong password"]
    assert [r["description"] for r in _csv(client, token, "&ip_address=198.51.100.77")] == [
        "frank logged in", "Failed login for 'erin': wrong password"]
    as_json = client.get("/api/v1/audit-logs/export?format=json&ip_address=2001:DB8::77", headers=bearer(token)).json
    assert [(item["username"], item["ip_address"]) for item in as_json] == [("erin", "2001:db8::77")]
