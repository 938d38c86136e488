"""The audit log's queries (audit/read/query.py). AuditLogRepository on a large dataset: every filter alone and
combined, paging, counts, the default order and the export's stream of rows, each checked against the same question
answered in Python. Cursor (keyset) paging and the bounded count rule, through the API.

The 10,000-event dataset is built once per module (read-only), in a database of its own; the tests that do not
use it have the usual empty database of their own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from audit_portal import create_app
from audit_portal.audit.demo.seed import generate
from audit_portal.audit.read.export import prepare_export
from audit_portal.audit.read.query import AuditFilters, AuditLogRepository
from audit_portal.audit.read.schemas import AuditLogFilterSchema
from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.write.inserts import insert_events
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from audit_portal.users import services as user_services
from tests.api_helpers import bearer, make_token
from tests.conftest import PASSWORD

SEEDED = 10_000
#: A day outside the seed's window (the last 30 days), holding hand-made boundary events.
DAY = datetime(2020, 2, 29, tzinfo=UTC)
SEARCHABLE = [
    "Progress 100% reached", "Progress 1000 reached", "Saved file_a.txt", "Saved fileXa.txt",
    "Copied C:\\temp\\new", "Copied C:temp", "Logged In From Mars",
]
COLUMNS = ("id", "event_id", "timestamp", "user_id", "action_type", "resource_type", "status", "category", "severity",
           "error_type", "description", "ip_address", "username", "event_metadata")


@dataclass
class Dataset:
    app: object
    rows: list  # every stored row (the columns above), as the oracle's input
    users: dict[str, int]

    def expected(self, filters: AuditFilters) -> list[int]:
        """The ids ``filters`` should select, newest first, computed in Python."""
        matching = [row for row in self.rows if _matches(row, filters)]
        matching.sort(key=lambda row: (row.timestamp, row.id), reverse=True)
        return [row.id for row in matching]


def _matches(row, f: AuditFilters) -> bool:
    if f.date_from is not None and row.timestamp < f.date_from:
        return False
    if f.date_to is not None and row.timestamp >= f.date_to:
        return False
    for name in ("user_id", "action_type", "resource_type", "status", "category", "severity", "error_type",
                 "ip_address"):
        if getattr(f, name) is not None and getattr(row, name) != getattr(f, name):
            return False
    if f.username is not None and f.username not in (row.username, (row.event_metadata or {}).get("attempted_username")):
        return False
    return not f.search or f.search.lower() in row.description.lower()


def _crafted_events(users: dict[str, int]) -> list[dict]:
    def event(when, description, **fields):
        return build_event(ActionType.UPDATE, ResourceType.SETTING, "crafted", description, timestamp=when,
                           user_id=users["carol"], username="carol", **fields)

    tick = timedelta(microseconds=1)
    boundaries = [
        event(DAY - tick, "just before the day"),
        event(DAY, "first moment of the day"),
        event(DAY + timedelta(days=1) - tick, "last moment of the day"),
        event(DAY + timedelta(days=1), "first moment of the next day"),
    ]
    ties = [event(DAY - timedelta(days=30), f"same moment {i}") for i in range(3)]
    searchable = [event(DAY - timedelta(days=10, minutes=i), text_) for i, text_ in enumerate(SEARCHABLE)]
    return boundaries + ties + searchable


def _database_url(postgres_url, tmp_path_factory):
    if not postgres_url:
        return f"sqlite:///{tmp_path_factory.mktemp('repository') / 'audit.db'}", None
    url = make_url(postgres_url)
    name = f"{url.database}_repo"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="module")
def dataset(postgres_url, tmp_path_factory):
    url, drop = _database_url(postgres_url, tmp_path_factory)
    app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url,
                      "AUDIT_DATA_DIR": str(tmp_path_factory.mktemp("repository-data")),
                      "SECRET_KEY": "test-secret-key-that-is-long-enough-000000"})
    with app.app_context():
        db.create_all()
        user_services.ensure_default_roles()
        users = {}
        for name in ("alice", "bob", "carol"):
            users[name] = user_services.create_user(None, username=name, email=f"{name}@example.com",
                                                    password=PASSWORD).id
        db.session.commit()
        events = list(generate(SEEDED, [(uid, name) for name, uid in users.items()] + [(None, None)], seed=20260301))
        with db.engine.begin() as connection:
            insert_ignoring_duplicates(connection, events + _crafted_events(users))
        rows = db.session.execute(select(*(getattr(AuditLog, c) for c in COLUMNS))).all()
        db.session.remove()
    yield Dataset(app, rows, users)
    app.extensions["audit_writer"].close()
    with app.app_context():
        db.engine.dispose()
    if drop:
        drop()


@pytest.fixture
def repo(dataset):
    with dataset.app.app_context():
        yield AuditLogRepository()
        db.session.remove()


def _load(dataset: Dataset, params: dict) -> AuditFilters:
    """Filters as every endpoint parses them; ``user:<name>`` stands for that user's id."""
    params = {k: (dataset.users[v[5:]] if isinstance(v, str) and v.startswith("user:") else v) for k, v in params.items()}
    return AuditLogFilterSchema().load(params)


def _ids(logs) -> list[int]:
    return [log.id for log in logs]


def test_the_dataset_is_large(dataset, repo):
    assert repo.count() == len(dataset.rows) > SEEDED


def test_default_order_is_newest_first_then_highest_id(dataset, repo):
    assert _ids(repo.get_all(limit=500)) == dataset.expected(AuditFilters())[:500]


def test_events_at_the_same_moment_are_ordered_by_id_descending(dataset, repo):
    moment = DAY - timedelta(days=30)
    filters = AuditFilters(date_from=moment, date_to=moment + timedelta(microseconds=1))
    ties = repo.get_all(filters)
    assert [log.description for log in ties] == ["same moment 2", "same moment 1", "same moment 0"]
    assert _ids(ties) == sorted(_ids(ties), reverse=True)


SINGLE_FILTERS = [
    {"user_id": "user:alice"},
    {"action_type": "login"},
    {"action_type": "PASSWORD_CHANGE"},
    {"resource_type": "user"},
    {"status": "FAILURE"},
    {"status": "error"},
    {"category": "security"},
    {"category": "AUTHENTICATION"},
    {"severity": "critical"},
    {"severity": "WARNING"},
    {"error_type": "ZeroDivisionError"},
    {"search": "LOGGED IN"},
    {"search": "answered 500"},
    {"ip_address": "192.0.2.9"},
    {"ip_address": "2001:DB8:0::17"},  # stored as 2001:db8::17
    {"username": "bob"},  # bob's events, and failed logins that typed "bob"
    {"username": "root"},  # only failed logins typed it
]


@pytest.mark.parametrize("params", SINGLE_FILTERS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_each_filter_alone(dataset, repo, params):
    filters = _load(dataset, params)
    expected = dataset.expected(filters)
    assert 0 < len(expected) < len(dataset.rows), "the filter should select some rows, not all"
    assert repo.count(filters) == len(expected)
    assert _ids(repo.get_all(filters, 0, len(dataset.rows))) == expected


COMBINED_FILTERS = [
    {"action_type": "LOGIN", "user_id": "user:bob"},
    {"severity": "WARNING", "action_type": "EXCEPTION_RAISED", "user_id": "user:alice"},
    {"action_type": "UPDATE", "search": "on user-1", "user_id": "user:carol"},
    {"category": "requests", "status": "FAILURE", "user_id": "user:bob"},
    {"error_type": "ZeroDivisionError", "action_type": "ERROR_OCCURRED", "user_id": "user:alice"},
    {"resource_type": "SETTING", "action_type": "CREATE", "user_id": "user:bob"},
    {"search": "bob", "status": "FAILURE"},
    {"username": "alice", "ip_address": "10.0.2.23"},
    {"username": "carol", "action_type": "LOGIN_FAILED"},
]


@pytest.mark.parametrize("params", COMBINED_FILTERS, ids=lambda p: "-".join(p))
def test_filters_combined(dataset, repo, params):
    filters = _load(dataset, params)
    expected = dataset.expected(filters)
    assert expected
    for name in params:  # each filter takes its part: dropping it selects more
        looser = dataset.expected(_load(dataset, {k: v for k, v in params.items() if k != name}))
        assert len(looser) > len(expected), f"{name} does not narrow the result"
    assert repo.count(filters) == len(expected)
    assert _ids(repo.get_all(filters, 0, len(dataset.rows))) == expected


def test_username_finds_the_actors_events_and_the_failed_logins_that_typed_the_name(dataset, repo):
    found = repo.get_all(_load(dataset, {"username": "alice"}), 0, len(dataset.rows))
    by_alice = [log for log in found if log.username == "alice"]
    typed = [log for log in found if log.username is None]
    assert len(by_alice) + len(typed) == len(found) and by_alice and typed
    assert {log.user_id for log in by_alice} == {dataset.users["alice"]}
    assert {log.action_type for log in typed} == {"LOGIN_FAILED", "LOGIN_THROTTLED"}
    assert {log.event_metadata["attempted_username"] for log in typed} == {"alice"}
    assert repo.get_all(_load(dataset, {"username": "Alice"})) == []  # exact: case counts
    assert repo.get_all(_load(dataset, {"username": "alic"})) == []  # exact: no partial match


def test_ip_address_returns_exactly_that_addresss_events(dataset, repo):
    filters = _load(dataset, {"ip_address": "10.0.3.101"})
    found = repo.get_all(filters, 0, len(dataset.rows))
    assert {log.ip_address for log in found} == {"10.0.3.101"}
    assert len(found) == sum(row.ip_address == "10.0.3.101" for row in dataset.rows) > 0


def test_a_date_range_combined_with_other_filters(dataset, repo):
    newest = max(row.timestamp for row in dataset.rows)
    week_ago = (newest - timedelta(days=7)).date().isoformat()
    two_days_ago = (newest - timedelta(days=2)).isoformat()
    others = {"status": "SUCCESS", "category": "authentication"}
    filters = _load(dataset, {"date_from": week_ago, "date_to": two_days_ago, **others})
    expected = dataset.expected(filters)
    assert 0 < len(expected) < len(dataset.expected(_load(dataset, others)))
    assert repo.count(filters) == len(expected)
    assert _ids(repo.get_all(filters, 0, len(dataset.rows))) == expected


def test_no_match_is_an_empty_page_and_a_zero_count(dataset, repo):
    filters = _load(dataset, {"action_type": "LOGIN", "status": "ERROR"})
    assert repo.get_all(filters) == [] and repo.count(filters) == 0


# -- dates -----------------------------------------------------------------------------------


def _descriptions(repo, dataset, params) -> list[str]:
    return [log.description for log in repo.get_all(_load(dataset, params), 0, 100)]


def test_a_date_alone_means_that_whole_utc_day(dataset, repo):
    day = DAY.date().isoformat()
    assert _descriptions(repo, dataset, {"date_from": day, "date_to": day}) == [
        "last moment of the day", "first moment of the day"]


def test_date_from_and_date_to_each_alone(dataset, repo):
    day = DAY.date().isoformat()
    until = _load(dataset, {"date_to": day})
    assert [log.description for log in repo.get_all(until, 0, 3)] == [
        "last moment of the day", "first moment of the day", "just before the day"]
    assert repo.count(until) == len(dataset.expected(until))
    since = _load(dataset, {"date_from": day})
    newest_first = repo.get_all(since, 0, len(dataset.rows))
    assert [log.description for log in newest_first[-3:]] == [
        "first moment of the next day", "last moment of the day", "first moment of the day"]
    assert repo.count(since) == len(newest_first) == len(dataset.expected(since))


def test_datetimes_with_an_offset_are_compared_in_utc(dataset, repo):
    # 01:00 at +01:00 is midnight UTC: the first moment of the day is included, the one before is not.
    params = {"date_from": "2020-02-29T01:00:00+01:00", "date_to": "2020-02-29T12:00:00Z"}
    assert _descriptions(repo, dataset, params) == ["first moment of the day"]


# -- search ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "found"),
    [
        ("100%", ["Progress 100% reached"]),
        ("file_a", ["Saved file_a.txt"]),
        ("C:\\temp", ["Copied C:\\temp\\new"]),
        ("\\", ["Copied C:\\temp\\new"]),
        ("logged in from MARS", ["Logged In From Mars"]),
        ("%", ["Progress 100% reached"]),
        ("_", ["Saved file_a.txt"]),
    ],
)
def test_search_is_case_insensitive_and_takes_wildcards_literally(dataset, repo, search, found):
    filters = _load(dataset, {"search": search, "user_id": "user:carol", "resource_type": "SETTING"})
    assert [log.description for log in repo.get_all(filters)] == found
    assert repo.count(filters) == len(found)


# -- paging ----------------------------------------------------------------------------------


def test_pages_cover_every_row_once_in_order(dataset, repo):
    expected = dataset.expected(AuditFilters())
    pages = [_ids(repo.get_all(AuditFilters(), skip, 1000)) for skip in range(0, len(expected), 1000)]
    assert [len(page) for page in pages[:-1]] == [1000] * (len(pages) - 1)
    assert 0 < len(pages[-1]) <= 1000
    assert [i for page in pages for i in page] == expected


def test_skip_and_limit_on_a_filtered_result(dataset, repo):
    filters = _load(dataset, {"status": "FAILURE"})
    expected = dataset.expected(filters)
    assert _ids(repo.get_all(filters, 10, 25)) == expected[10:35]
    assert _ids(repo.get_all(filters, len(expected) - 3, 50)) == expected[-3:]
    assert repo.get_all(filters, len(expected), 50) == []
    assert _ids(repo.get_all(filters, 7, 1)) == [expected[7]]


# -- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"category": "errors"}, {"user_id": "user:bob", "status": "SUCCESS"},
                                    {"username": "root"}, {"ip_address": "2001:db8::17", "username": "carol"}])
def test_the_export_streams_the_same_rows_as_get_all(dataset, repo, params):
    filters = _load(dataset, params)
    streamed = [json.loads(line)["id"] for line in "".join(prepare_export(filters, "ndjson").chunks()).splitlines()]
    assert streamed == _ids(repo.get_all(filters, 0, len(dataset.rows))) == dataset.expected(filters)


# -- writing ----------------------------------------------------------------------------------


def test_get_by_id(app):
    with app.app_context():
        repo = AuditLogRepository()
        event = build_event(ActionType.CREATE, ResourceType.DATA_UPLOAD, 7, "Uploaded report.csv",
                            timestamp=datetime.now(UTC), status=Status.SUCCESS, metadata={"rows": 12})
        insert_events(db.session.connection(), [event])
        db.session.commit()
        created = repo.newest(AuditFilters())
        found = repo.get_by_id(created.id)
        assert (found.event_id, found.description, found.event_metadata) == (event["event_id"], "Uploaded report.csv",
                                                                             {"rows": 12})
        assert repo.get_by_id(created.id + 1000) is None


def test_recent_for_user_lists_what_the_user_did_newest_first(app, admin_id, make_user):
    bob_id = make_user("bob")
    with app.app_context():
        for i in range(3):
            for user_id in (admin_id, bob_id):
                insert_events(db.session.connection(), [build_event(
                    ActionType.READ, ResourceType.SETTING, i, f"read {i}", timestamp=datetime.now(UTC), user_id=user_id)])
        db.session.commit()
        recent = AuditLogRepository().recent_for_user(admin_id, limit=2)
        assert [(log.user_id, log.description) for log in recent] == [(admin_id, "read 2"), (admin_id, "read 1")]


# -- cursor paging and the bounded count, through the API ------------------------------------

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


def test_a_query_of_several_terms_counts_up_to_the_search_bound_and_one_term_to_the_full_one(app, client, token):
    """A ``q`` whose count must read each candidate row (several terms, a bare word) is counted like a search; one
    keyed term (``created:`` aside) keeps the full bound."""
    app.config["AUDIT_COUNT_LIMIT"], app.config["AUDIT_SEARCH_COUNT_LIMIT"] = 12, 6
    now = utcnow()
    insert(app, [ev(f"zs{i}", now - timedelta(seconds=i), Status.FAILURE) for i in range(20)])

    def total(q: str) -> tuple[int, bool]:
        data = client.get(URL, query_string={"q": q}, headers=bearer(token)).json["data"]
        return data["total"], data["total_is_exact"]

    assert total("status:failure") == (12, False)
    assert total("status:failure created:>=2000-01-01") == (12, False)
    assert total("status:failure -action:login") == (6, False)
    assert total("zs1") == (6, False)
    assert total("status:failure action:logout") == (0, True)  # exact below either bound
