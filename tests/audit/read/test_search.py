"""``audit_portal/audit/read/search.py``: the ``q`` language, table-driven over a fixed set of events made here.
Each valid query names exactly the events it must return, through the list API, the export and the viewer; each
invalid one the 422 message (with the term and its offset) it must give."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from audit_portal.audit.record.enums import ActionType as A
from audit_portal.audit.record.enums import ErrorSeverity, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from tests.api_helpers import bearer, make_token


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


#: name -> (action, resource, fields). The description is the name, so every path can be checked by it.
EVENTS = {
    "ev1": (A.LOGIN, ResourceType.SESSION, dict(user_id="alice", username="alice", ip_address="10.1.2.3", path="/auth/login",
                                               http_method="POST", timestamp=_at("2026-11-02T10:00:00"))),
    "ev2": (A.LOGIN_FAILED, ResourceType.SESSION, dict(status=Status.FAILURE, ip_address="10.9.9.9", path="/auth/login",
                                                      http_method="POST", metadata={"attempted_username": "alice"},
                                                      timestamp=_at("2026-11-03T09:00:00"))),
    "ev3": (A.LOGIN_FAILED, ResourceType.SESSION, dict(status=Status.FAILURE, ip_address="192.168.1.5",
                                                      metadata={"attempted_username": "Bob Smith"},
                                                      timestamp=_at("2026-11-05T12:00:00"))),
    "ev4": (A.UPDATE, ResourceType.USER, dict(user_id="bob", username="bob", ip_address="2001:db8::5",
                                             path="/admin/users/3/edit", http_method="POST",
                                             timestamp=_at("2026-11-10T08:00:00"))),
    "ev5": (A.EXCEPTION_RAISED, ResourceType.SYSTEM, dict(status=Status.ERROR, severity=ErrorSeverity.CRITICAL,
                                                         error_type="MemoryError", user_id="alice", username="alice",
                                                         fingerprint="a" * 32,
                                                         path="/admin/reports", http_method="GET",
                                                         timestamp=_at("2026-11-15T16:00:00"))),
    "ev6": (A.ERROR_OCCURRED, ResourceType.SYSTEM, dict(status=Status.ERROR, severity=ErrorSeverity.WARNING,
                                                       error_type="ValueError", ip_address="172.16.0.1",
                                                       fingerprint="b" * 32,
                                                       timestamp=_at("2026-11-20T07:30:00"))),
    "ev7": (A.EXPORT, ResourceType.AUDIT_LOG, dict(user_id="bob", username="bob", ip_address="10.1.2.4",
                                                  path="/api/v1/audit-logs/export", http_method="GET",
                                                  metadata={"client": {"kind": "api-token", "prefix": "ap_abc123"}},
                                                  timestamp=_at("2026-11-30T23:59:59"))),
    "ev8": (A.REQUEST, ResourceType.REQUEST, dict(timestamp=_at("2026-12-01T00:00:00"))),
}
DESCRIPTIONS = {"ev5": "ev5 disk full on /var", "ev6": "ev6 bad input value"}
ALL = set(EVENTS)
ERRORS = {"ev5", "ev6"}

VALID = [
    ("action:login", {"ev1"}),
    ("action:LOGIN_FAILED", {"ev2", "ev3"}),
    ("ACTION:login_failed", {"ev2", "ev3"}),
    ("action:login,login_failed", {"ev1", "ev2", "ev3"}),
    ("-action:login_failed", ALL - {"ev2", "ev3"}),
    ("status:failure", {"ev2", "ev3"}),
    ("status:error severity:critical", {"ev5"}),
    ("category:authentication", {"ev1", "ev2", "ev3"}),
    ("resource:user", {"ev4"}),
    ("severity:warning,critical", {"ev5", "ev6"}),
    ("-severity:critical", ALL - {"ev5"}),
    ("error:ValueError", {"ev6"}),
    ("user:alice", {"ev1", "ev2", "ev5"}),
    ("user:{alice}", {"ev1", "ev5"}),
    ('user:"Bob Smith"', {"ev3"}),
    ("-user:alice", ALL - {"ev1", "ev2", "ev5"}),
    ("user:alice,bob", {"ev1", "ev2", "ev4", "ev5", "ev7"}),
    ("ip:10.1.2.3", {"ev1"}),
    ("ip:10.0.0.0/8", {"ev1", "ev2", "ev7"}),
    ("-ip:10.0.0.0/8", ALL - {"ev1", "ev2", "ev7"}),
    ("ip:10.1.2.0/30", {"ev1"}),
    ("ip:2001:DB8:0::5", {"ev4"}),
    ("ip:2001:db8::/32", {"ev4"}),
    ("ip:192.168.0.0/16,172.16.0.0/12", {"ev3", "ev6"}),
    ("path:/auth/login", {"ev1", "ev2"}),
    ("path:/admin/*", {"ev4", "ev5"}),
    ("-path:/admin/*", ALL - {"ev4", "ev5"}),
    ("path:/auth/log", set()),
    ("method:post", {"ev1", "ev2", "ev4"}),
    ("-method:get", ALL - {"ev5", "ev7"}),
    ("token:ap_abc123", {"ev7"}),
    ("token:ap_other", set()),
    ("created:2026-11-05", {"ev3"}),
    ("created:>=2026-11-20", {"ev6", "ev7", "ev8"}),
    ("created:>2026-11-30", {"ev8"}),
    ("created:<2026-11-03", {"ev1"}),
    ("created:<=2026-11-03", {"ev1", "ev2"}),
    ("created:2026-11-02..2026-11-05", {"ev1", "ev2", "ev3"}),
    ("created:>=2026-11-30T23:59:59Z", {"ev7", "ev8"}),
    ("created:<2026-11-02T10:00:00", set()),
    ("-created:2026-11-01..2026-11-30", {"ev8"}),
    ("disk full", {"ev5"}),
    ("FULL", {"ev5"}),
    ('"full on"', {"ev5"}),
    ('"on full"', set()),
    ("disk action:exception_raised", {"ev5"}),
    ("disk action:login", set()),
    ("action:login_failed user:alice", {"ev2"}),
    ("action:login_failed -user:alice", {"ev3"}),
    ("status:error -ip:10.0.0.0/8 created:>=2026-11-01", {"ev5", "ev6"}),
    ("  action:login   ", {"ev1"}),
]
INVALID = [
    ("colour:red", "'colour:' at offset 0: unknown key"),
    ("action:dance", "'action:dance' at offset 0: unknown action 'dance'"),
    ("ok status:maybe", "'status:maybe' at offset 3: unknown status 'maybe'"),
    ("ip:10.0.0.300", "'ip:10.0.0.300' at offset 0: '10.0.0.300' is not an IPv4 or IPv6 address or range"),
    ("ip:10.0.0.0/33", "'10.0.0.0/33' is not an IP range such as 10.0.0.0/8"),
    ("created:yesterday", "'created:yesterday' at offset 0: 'yesterday' is not a date"),
    ("created:>=2026-13-01", "'2026-13-01' is not a date"),
    ("created:<=9999-12-31", "'9999-12-31' is not a date"),  # its whole day would end after the last one
    ("created:>=0001-01-01T00:00:00+01:00", "is not a date"),  # before year 1 in UTC
    ('user:"unclosed', "at offset 5: a quote is not closed"),
    ("action:", "'action:' at offset 0: a value is missing"),
    ("action:login,,logout", "a value is missing"),
    ("-disk", "'-disk' at offset 0: a bare word cannot be negated"),
    ("method:get -colour:x", "'-colour:' at offset 11: unknown key"),
]


@pytest.fixture
def dataset(app, make_user):
    """The events, their actors made through the users service; returns the actors' ids by name."""
    ids = {"alice": make_user("alice"), "bob": make_user("bob")}
    events = []
    for name, (action, resource, fields) in EVENTS.items():
        fields = {**fields, "user_id": ids[fields["user_id"]]} if "user_id" in fields else fields
        events.append(build_event(action, resource, None, DESCRIPTIONS.get(name, name), **fields))
    with app.app_context():
        with db.engine.begin() as connection:
            insert_ignoring_duplicates(connection, events)
        db.session.remove()
    return ids


@pytest.fixture
def headers(app, admin_id):
    return bearer(make_token(app, admin_id))


def _names(texts) -> set[str]:
    return {m for t in texts for m in re.findall(r"\bev\d\b", t or "")}


def _api(client, headers, q: str) -> set[str]:
    response = client.get("/api/v1/audit-logs/", query_string={"q": q, "limit": 500, "date_from": "2026-11-01"},
                          headers=headers)
    assert response.status_code == 200, (q, response.json)
    return _names(item["description"] for item in response.json["data"]["items"])


@pytest.mark.parametrize(("q", "expected"), VALID, ids=[q for q, _ in VALID])
def test_a_valid_query_returns_exactly_its_events_everywhere(client, headers, dataset, admin_client, q, expected):
    q = q.format(**dataset)
    assert _api(client, headers, q) == expected
    export = client.get("/api/v1/audit-logs/export", query_string={"q": q, "format": "json", "date_from": "2026-11-01"},
                        headers=headers)
    assert export.status_code == 200 and _names(item["description"] for item in export.json) == expected
    page = admin_client.get("/admin/audit-logs/", query_string={"q": q, "limit": 200, "date_from": "2026-11-01"})
    assert page.status_code == 200 and _names([page.get_data(as_text=True)]) == expected
    # The error lists hold the ERROR events among them: the errors API and the dashboard's groups.
    errors = client.get("/api/v1/audit-logs/errors", query_string={"q": q, "date_from": "2026-11-01"}, headers=headers)
    assert errors.status_code == 200 and _names(i["description"] for i in errors.json["data"]["items"]) == expected & ERRORS
    dashboard = admin_client.get("/admin/audit-logs/errors", query_string={"q": q, "date_from": "2026-11-01"})
    assert dashboard.status_code == 200 and _names([dashboard.get_data(as_text=True)]) == expected & ERRORS
    histogram = client.get("/api/v1/audit-logs/histogram", query_string={"q": q, "date_from": "2026-11-01",
                                                                         "date_to": "2026-12-01"},
                           headers=headers)
    assert histogram.status_code == 200 and histogram.json["data"]["total"] == len(expected)


@pytest.mark.parametrize(("q", "message"), INVALID, ids=[q for q, _ in INVALID])
def test_an_invalid_query_is_a_422_naming_the_term_and_its_offset(client, headers, admin_client, q, message):
    response = client.get("/api/v1/audit-logs/", query_string={"q": q}, headers=headers)
    assert response.status_code == 422
    assert any(message in text for text in response.json["errors"]["q"]), response.json
    page = admin_client.get("/admin/audit-logs/", query_string={"q": q})
    assert page.status_code == 422 and message.replace("'", "&#39;") in page.get_data(as_text=True)


def test_a_cursor_is_bound_to_its_query(client, headers, dataset):
    first = client.get("/api/v1/audit-logs/", query_string={"q": "action:login,login_failed", "limit": 1},
                       headers=headers).json["data"]
    assert first["next_cursor"]
    other = client.get("/api/v1/audit-logs/", query_string={"q": "action:login", "limit": 1,
                                                              "cursor": first["next_cursor"]}, headers=headers)
    assert other.status_code == 422 and "cursor" in other.json["errors"]


def test_the_error_dashboard_takes_the_same_queries(admin_client, dataset):
    assert admin_client.get("/admin/audit-logs/errors", query_string={"q": "error:ValueError"}).status_code == 200
    bad = admin_client.get("/admin/audit-logs/errors", query_string={"q": "error:"})
    assert bad.status_code == 422 and "a value is missing" in bad.get_data(as_text=True)


def test_the_viewer_keeps_the_query_in_its_box(admin_client, dataset):
    page = admin_client.get("/admin/audit-logs/", query_string={"q": 'user:"Bob Smith"'}).get_data(as_text=True)
    assert 'id="f-q"' in page and 'value="user:&#34;Bob Smith&#34;"' in page


def test_each_term_of_the_query_is_a_chip_that_removes_only_itself(admin_client, dataset):
    page = admin_client.get("/admin/audit-logs/", query_string={
        "q": 'action:login_failed  -ip:10.0.0.0/8 "disk full"', "status": "FAILURE"}).get_data(as_text=True)
    chips = re.findall(r'<a class="filter-chip filter-chip-term" data-testid="query-chip" href="([^"]+)"', page)
    assert [html.unescape(c) for c in chips] == [
        "/admin/audit-logs/?q=-ip:10.0.0.0/8+%22disk+full%22&status=FAILURE",
        "/admin/audit-logs/?q=action:login_failed+%22disk+full%22&status=FAILURE",
        "/admin/audit-logs/?q=action:login_failed++-ip:10.0.0.0/8&status=FAILURE"]  # the rest as typed
    assert 'aria-label="Remove filter Status: FAILURE"' in page
    assert 'aria-label="Remove filter Query' not in page  # the query shows as its terms, not as one chip


def test_an_address_postgresql_cannot_read_as_inet_neither_fails_its_insert_nor_a_range_query(app, client, headers):
    """A scope id (``fe80::1%eth0``) is a valid address to Python but not to PostgreSQL's inet: the index on
    ``audit_inet(ip_address)`` must not refuse the event, nor a range query fail on it."""
    event = build_event(A.LOGIN, ResourceType.SESSION, None, "ev9 scoped", ip_address="fe80::1%eth0",
                        timestamp=_at("2026-11-04T00:00:00"))
    with app.app_context():
        with db.engine.begin() as connection:
            insert_ignoring_duplicates(connection, [event])
        db.session.remove()
    assert _api(client, headers, "ip:fe80::/10") <= {"ev9"}  # SQLite reads the scope id; PostgreSQL cannot
    assert _api(client, headers, "-ip:10.0.0.0/8") == {"ev9"}


def test_removing_a_chip_keeps_the_spaces_inside_the_other_terms_quotes(admin_client, dataset):
    page = admin_client.get("/admin/audit-logs/", query_string={"q": 'action:login  "disk  full" action:login'})
    chips = re.findall(r'data-testid="query-chip" href="([^"]+)"', page.get_data(as_text=True))
    assert [html.unescape(c) for c in chips][0] == "/admin/audit-logs/?q=%22disk++full%22+action:login"
