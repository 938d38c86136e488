"""The live tail's API: ``since_id`` (events with a larger id, oldest first), the tail token, and which polls
are recorded as REQUEST events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit_portal.audit.record import partitions
from audit_portal.audit.record.enums import ActionType as A
from audit_portal.audit.record.enums import ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.extensions import db
from tests.api_helpers import bearer, make_token

LIST = "/api/v1/audit-logs/"


def _insert(app, *ids_and_actions) -> None:
    """Events with these explicit ids (a late commit: a lower id stored after a higher one)."""
    rows = [{**build_event(action, ResourceType.SESSION, None, f"tail event {log_id}",
                           timestamp=datetime(2026, 12, 1, tzinfo=UTC)), "id": log_id}
            for log_id, action in ids_and_actions]
    with app.app_context():
        with db.engine.begin() as connection:
            partitions.ensure_for_events(connection, rows)  # a fixed date: its month on PostgreSQL
            connection.execute(AuditLog.__table__.insert(), rows)  # with their ids, as they are
        db.session.remove()


@pytest.fixture
def headers(app, admin_id):
    return bearer(make_token(app, admin_id))


def _requests(audit_rows) -> list[str]:
    return [row.path for row in audit_rows() if row.action_type == "REQUEST" and row.path.startswith(LIST)]


def _tail(client, headers, **params):
    return client.get(LIST, query_string=params, headers=headers)


def test_since_id_returns_newer_matching_events_oldest_first(app, client, headers):
    _insert(app, (1001, A.LOGIN), (1002, A.LOGIN_FAILED), (1003, A.LOGIN), (1004, A.LOGIN))
    data = _tail(client, headers, since_id=1001, q="action:login").json["data"]
    assert [item["id"] for item in data["items"]] == [1003, 1004]
    assert data["tail_token"] and data["total"] == 2 and data["total_is_exact"] is True
    page = _tail(client, headers, since_id=1001, limit=1).json["data"]
    assert [item["id"] for item in page["items"]] == [1002] and page["total_is_exact"] is False


def test_a_late_commit_is_found_by_rereading_behind_the_newest_id(app, client, headers):
    _insert(app, (2005, A.LOGIN))
    assert [i["id"] for i in _tail(client, headers, since_id=2000).json["data"]["items"]] == [2005]
    _insert(app, (2003, A.LOGIN))  # committed after 2005 was seen
    assert [i["id"] for i in _tail(client, headers, since_id=2005).json["data"]["items"]] == []
    assert [i["id"] for i in _tail(client, headers, since_id=2000).json["data"]["items"]] == [2003, 2005]


def test_starting_a_tail_is_recorded_and_its_polls_are_not(app, client, headers, audit_rows):
    start = _tail(client, headers, since_id=0, q="action:login")
    token = start.json["data"]["tail_token"]
    for _ in range(3):
        assert _tail(client, headers, since_id=0, q="action:login", tail=token).status_code == 200
    app.extensions["audit_writer"].flush()
    recorded = _requests(audit_rows)
    assert len(recorded) == 1 and "since_id=0" in recorded[0]
    # A poll from an id below the tail's start reads what the recorded start did not: it is recorded.
    later = _tail(client, headers, since_id=50, q="action:login").json["data"]["tail_token"]
    assert _tail(client, headers, since_id=0, q="action:login", tail=later).status_code == 200
    assert _tail(client, headers, since_id=60, q="action:login", tail=later).status_code == 200
    app.extensions["audit_writer"].flush()
    recorded = _requests(audit_rows)
    assert len(recorded) == 3 and "since_id=50" in recorded[1] and "since_id=0&" in recorded[2]
    # A script polling with since_id alone is recorded every time, like any other read.
    _tail(client, headers, since_id=0)
    _tail(client, headers, since_id=0)
    app.extensions["audit_writer"].flush()
    assert len(_requests(audit_rows)) == 5


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"since_id": "-1"}, "since_id", "Must be greater than or equal to 0"),
    ({"since_id": "x"}, "since_id", "Not a valid integer"),
    ({"since_id": "1", "cursor": "abc"}, "since_id", "either since_id or cursor"),
    ({"since_id": "1", "skip": "5"}, "since_id", "either since_id or skip"),
    ({"tail": "abc"}, "tail", "tail goes with since_id"),
    ({"since_id": "1", "tail": "forged"}, "tail", "Not a valid tail token"),
])
def test_bad_tail_parameters_are_a_422_naming_them(client, headers, params, field, message):
    response = _tail(client, headers, **params)
    assert response.status_code == 422
    assert any(message in text for text in response.json["errors"][field]), response.json


def test_a_token_is_bound_to_its_admin_and_filters_and_expires(app, client, headers, make_user):
    token = _tail(client, headers, since_id=0, q="action:login").json["data"]["tail_token"]
    other_filters = _tail(client, headers, since_id=0, q="action:logout", tail=token)
    assert other_filters.status_code == 422 and "other filters" in other_filters.json["errors"]["tail"][0]
    other_admin = bearer(make_token(app, make_user("root2", role="admin")))
    assert _tail(client, other_admin, since_id=0, q="action:login", tail=token).status_code == 422
    app.config["AUDIT_TAIL_MAX_HOURS"] = -1
    expired = _tail(client, headers, since_id=0, q="action:login", tail=token)
    assert expired.status_code == 422 and "expired" in expired.json["errors"]["tail"][0]
