"""Cursor (keyset) paging and the bounded count rule, through the API."""

from datetime import timedelta

import pytest

from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from tests.api_helpers import bearer, make_token

URL = "/api/v1/audit-logs/"


@pytest.fixture
def token(app, admin_id):
    return make_token(app, admin_id)


def insert(app, events):
    with app.app_context(), db.engine.begin() as conn:
        insert_ignoring_duplicates(conn, events)


def ev(description, when, status=Status.SUCCESS):
    return build_event(ActionType.UPDATE, ResourceType.SETTING, None, description, timestamp=when, status=status)


def walk(client, token, query="", limit=7):
    seen, cursor = [], None
    while True:
        url = f"{URL}?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        data = client.get(url, headers=bearer(token)).json["data"]
        seen += [item["description"] for item in data["items"]]
        cursor = data["next_cursor"]
        if not cursor:
            return seen


def test_cursor_walk_returns_every_event_once_even_with_equal_timestamps(app, client, token):
    now = utcnow()
    same = now - timedelta(minutes=5)
    insert(app, [ev(f"zq-same-{i}", same) for i in range(20)]
           + [ev(f"zq-t-{i}", now - timedelta(minutes=i)) for i in range(10)])
    seen = walk(client, token, "&search=zq-")
    assert len(seen) == 30 and len(set(seen)) == 30


def test_cursor_walk_is_stable_while_new_events_arrive(app, client, token):
    base = utcnow() - timedelta(hours=1)
    insert(app, [ev(f"old-{i}", base + timedelta(seconds=i)) for i in range(25)])
    first = client.get(f"{URL}?limit=10&search=old-", headers=bearer(token)).json["data"]
    seen = [i["description"] for i in first["items"]]
    insert(app, [ev(f"old-new-{i}", utcnow()) for i in range(5)])  # newer than everything: lands on "page 0"
    cursor = first["next_cursor"]
    while cursor:
        data = client.get(f"{URL}?limit=10&search=old-&cursor={cursor}", headers=bearer(token)).json["data"]
        seen += [i["description"] for i in data["items"]]
        cursor = data["next_cursor"]
    assert seen == [f"old-{i}" for i in reversed(range(25))]


@pytest.mark.parametrize("cursor", ["garbage", "eyJ0IjoxfQ", "x" * 400])
def test_bad_cursor_is_a_422(client, token, cursor):
    response = client.get(f"{URL}?cursor={cursor}", headers=bearer(token))
    assert response.status_code == 422 and "cursor" in response.json["errors"]


def test_cursor_cannot_be_reused_with_other_filters(app, client, token):
    now = utcnow()
    insert(app, [ev(f"x{i}", now - timedelta(seconds=i), Status.FAILURE if i % 2 else Status.SUCCESS)
                 for i in range(10)])
    cursor = client.get(f"{URL}?limit=2&status=failure", headers=bearer(token)).json["data"]["next_cursor"]
    widened = client.get(f"{URL}?limit=2&cursor={cursor}", headers=bearer(token))
    assert widened.status_code == 422 and "other filters" in widened.json["message"]
    assert client.get(f"{URL}?limit=2&skip=2&cursor={cursor}&status=failure", headers=bearer(token)).status_code == 422


def test_count_is_exact_below_the_limit_and_a_lower_bound_above(app, client, token):
    app.config["AUDIT_COUNT_LIMIT"] = 12
    now = utcnow()
    insert(app, [ev(f"zq{i}", now - timedelta(seconds=i), Status.FAILURE if i < 5 else Status.SUCCESS)
                 for i in range(20)])
    few = client.get(f"{URL}?status=failure", headers=bearer(token)).json["data"]
    assert few["total"] == 5 and few["total_is_exact"] is True
    many = client.get(f"{URL}?search=zq", headers=bearer(token)).json["data"]
    assert many["total"] == 12 and many["total_is_exact"] is False
    assert many["next_cursor"] is None and len(many["items"]) == 20


def test_a_search_counts_up_to_the_search_bound(app, client, token):
    app.config["AUDIT_COUNT_LIMIT"], app.config["AUDIT_SEARCH_COUNT_LIMIT"] = 12, 6
    now = utcnow()
    insert(app, [ev(f"zr{i}", now - timedelta(seconds=i), Status.FAILURE if i < 8 else Status.SUCCESS)
                 for i in range(20)])
    searched = client.get(f"{URL}?search=zr", headers=bearer(token)).json["data"]
    assert searched["total"] == 6 and searched["total_is_exact"] is False
    filtered = client.get(f"{URL}?status=failure", headers=bearer(token)).json["data"]
    assert filtered["total"] == 8 and filtered["total_is_exact"] is True
