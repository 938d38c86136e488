"""The read replica (audit_portal/replica.py), against a real streaming replica: a throwaway primary and replica made
for this module (tests/replica_cluster.py), never the shared cluster.

The proof that a read is served by the replica is behavioural: replay is paused on the replica, an event is written
to the primary, and the list does not show it, while a read that goes to the primary (the event's detail, a login,
user management) sees its own write. With the lag past REPLICA_MAX_LAG_SECONDS, or the replica gone, the lists
show the newest event again: the primary serves them.
"""

from __future__ import annotations

import logging
import os
import time

import pytest
from sqlalchemy import event

from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.write.service import log_audit, log_error
from audit_portal.database import normalise_database_url
from audit_portal.extensions import db
from tests.api_helpers import bearer, make_token
from tests.conftest import PASSWORD
from tests.metrics.scrape import scrape, value
from tests.replica_cluster import ReplicaCluster, free_port, unavailable_reason

needs_cluster = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                       reason="the replica is PostgreSQL's: set TEST_DATABASE_URL"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"no throwaway cluster here: {unavailable_reason()}"),
]
MARK = "replica-marker"
pytestmark = needs_cluster


class ReplicaOops(Exception):
    """An error recorded before replay is paused (the replica has it)."""


class PrimaryOnlyOops(Exception):
    """An error recorded while replay is paused (only the primary has it)."""


@pytest.fixture(scope="module")
def cluster():
    if not os.environ.get("TEST_DATABASE_URL") or unavailable_reason():
        pytest.skip("needs TEST_DATABASE_URL and a machine that can run a throwaway PostgreSQL")
    with ReplicaCluster() as made:
        yield made


@pytest.fixture
def database_url(cluster):
    return normalise_database_url(cluster.primary_url)


@pytest.fixture
def app_config(app_config, cluster, request):
    """The replica's settings (every check made afresh, a lag nothing in a test reaches), then the test's own."""
    config = {**app_config, "DATABASE_REPLICA_URL": cluster.replica_url, "REPLICA_MAX_LAG_SECONDS": 3600.0,
              "REPLICA_CHECK_SECONDS": 0.0}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        config.update(marker.kwargs)
    return config


@pytest.fixture
def app(app, cluster):
    """The app on the throwaway primary, its tables replayed on the replica; afterwards replay runs again and the
    replica's connections are closed."""
    cluster.wait_replayed()
    yield app
    cluster.resume_replay()
    replica = app.extensions.get("replica")
    if replica is not None:
        replica.dispose()


def write_event(app, description: str) -> int:
    """Record an event on the primary (committed) and return its id."""
    with app.app_context():
        event_id = log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "replica", description, transactional=True)
        db.session.commit()
        assert app.extensions["audit_writer"].flush()  # out of the outbox, into audit_logs
        return db.session.execute(db.text("SELECT id FROM audit_logs WHERE event_id = :e"), {"e": event_id}).scalar()


def write_error(app, exc_class: type[Exception]) -> None:
    with app.app_context():
        try:
            raise exc_class(f"{MARK} {exc_class.__name__}")
        except exc_class as exc:
            log_error(exc, transactional=True)
        db.session.commit()
    assert app.extensions["audit_writer"].flush()


def pause_and_write(app, cluster) -> int:
    """The replica has the first marker event and ReplicaOops; replay is then paused and the second marker event
    and PrimaryOnlyOops go to the primary only. Returns the id of the second event."""
    write_event(app, f"{MARK} one: on both")
    write_error(app, ReplicaOops)
    cluster.wait_replayed()
    cluster.pause_replay()
    newest = write_event(app, f"{MARK} two: primary only")
    write_error(app, PrimaryOnlyOops)
    cluster.wait_received()
    return newest


def _items(client, url, headers) -> str:
    return " | ".join(item["description"] for item in client.get(url, headers=headers).get_json()["data"]["items"])


def _histogram(client, headers) -> str:
    """The chart's counts for the older and the newer marker event, as text."""
    shown = []
    for words in ("on both", "primary only"):
        body = client.get(f"/api/v1/audit-logs/histogram?search={words}", headers=headers).get_json()
        total = sum(sum(bucket["counts"].values()) for bucket in body["data"]["buckets"])
        shown += [words] * total
    return " | ".join(shown)


#: Each list read, as the text a user gets (descriptions, a page, a file).
READS = {
    "list API": lambda c, h: _items(c, f"/api/v1/audit-logs/?search={MARK}", h),
    "live tail": lambda c, h: _items(c, f"/api/v1/audit-logs/?since_id=0&search={MARK}", h),
    "errors API": lambda c, h: _items(c, f"/api/v1/audit-logs/errors?search={MARK}", h),
    "histogram": _histogram,
    "CSV export": lambda c, h: c.get(f"/api/v1/audit-logs/export?format=csv&search={MARK}", headers=h).get_data(True),
    "JSON export": lambda c, h: c.get(f"/api/v1/audit-logs/export?format=json&search={MARK}", headers=h).get_data(True),
    "viewer": lambda c, h: c.get(f"/admin/audit-logs/?search={MARK}").get_data(as_text=True),
    "viewer NDJSON export": lambda c, h: c.get(f"/admin/audit-logs/export?format=ndjson&search={MARK}").get_data(True),
    "error dashboard": lambda c, h: c.get("/admin/audit-logs/errors").get_data(as_text=True),
    "error group": lambda c, h: c.get(f"/admin/audit-logs/errors?search={MARK}").get_data(as_text=True),
}
#: What each read shows of the event that only the primary has (the errors' reads: the error recorded with it).
OLDER, NEWER = {"errors API": "ReplicaOops", "error dashboard": "ReplicaOops", "error group": "ReplicaOops"}, \
    {"errors API": "PrimaryOnlyOops", "error dashboard": "PrimaryOnlyOops", "error group": "PrimaryOnlyOops"}


@pytest.fixture
def admin(app, admin_client, admin_id):
    """The logged-in admin's client and a bearer token's headers."""
    return admin_client, bearer(make_token(app, admin_id))


@pytest.mark.parametrize("read", READS)
def test_a_list_read_comes_from_the_replica(app, cluster, admin, read):
    """Replay paused: the event written since is on the primary (its detail shows it at once) but not in the list,
    the chart, the dashboard or the export, which the replica serves; once replay resumes, they show it."""
    client, headers = admin
    older, newer = OLDER.get(read, "on both"), NEWER.get(read, "primary only")
    newest = pause_and_write(app, cluster)
    detail = client.get(f"/api/v1/audit-logs/{newest}", headers=headers)
    assert "primary only" in detail.get_json()["data"]["description"]  # the primary has it

    behind = READS[read](client, headers)
    assert older in behind and newer not in behind, behind
    cluster.resume_replay()
    cluster.wait_replayed()
    assert newer in READS[read](client, headers)


def test_logins_and_user_management_go_to_the_primary(app, cluster, client, auth, admin_id):
    """With replay paused the replica lags behind every write, yet a login, a user's creation and reading that user
    back work: they are the primary's. The audit events they wrote are on the primary at once."""
    token, script = make_token(app, admin_id), app.test_client()
    cluster.wait_replayed()
    cluster.pause_replay()
    assert auth.login("admin").status_code == 302
    assert client.get("/api/v1/me").get_json()["data"]["username"] == "admin"
    created = script.post("/api/v1/users/", headers=bearer(token),
                          json={"username": "bob", "email": "bob@example.com", "password": PASSWORD})
    assert created.status_code == 201, created.get_json()
    user_id = created.get_json()["data"]["id"]
    assert script.get(f"/api/v1/users/{user_id}", headers=bearer(token)).get_json()["data"]["username"] == "bob"
    deactivated = script.post(f"/api/v1/users/{user_id}/deactivate", headers=bearer(token))
    assert deactivated.status_code == 200, deactivated.get_json()
    assert script.get(f"/api/v1/users/{user_id}", headers=bearer(token)).get_json()["data"]["is_active"] is False
    cluster.wait_received()
    assert cluster.scalar("replica", "SELECT count(*) FROM users WHERE username = 'bob'") == 0  # still behind
    assert app.extensions["audit_writer"].flush()  # the events moved from the outbox (on the primary) into the log
    with app.app_context():
        actions = set(db.session.scalars(db.text(
            "SELECT action_type FROM audit_logs WHERE resource_type = 'USER' AND resource_id = :id"), {"id": str(user_id)}))
    assert {"CREATE", "DEACTIVATE"} <= actions


@pytest.mark.settings(REPLICA_MAX_LAG_SECONDS=1.0, METRICS_ENABLED=True)
def test_a_replica_lagging_past_the_limit_is_skipped(app, cluster, admin, caplog):
    """Replay paused for longer than REPLICA_MAX_LAG_SECONDS while the primary writes: the lists, the export and the
    dashboard show the newest event (the primary serves them), the skip is logged and counted; once the replica
    catches up, it serves them again."""
    client, headers = admin
    write_event(app, f"{MARK} one: on both")
    cluster.wait_replayed()
    cluster.pause_replay()
    time.sleep(1.5)  # the last transaction the replica replayed is now older than the limit
    write_event(app, f"{MARK} two: primary only")
    cluster.wait_received()
    caplog.set_level(logging.WARNING, logger="audit_portal.replica")
    for read in ("list API", "live tail", "CSV export", "viewer", "histogram"):
        assert "primary only" in READS[read](client, headers), read
    skips = [r.getMessage() for r in caplog.records if "read replica skipped" in r.getMessage()]
    assert len(skips) == 1 and "lags" in skips[0], skips  # said once, not at every read
    assert value(scrape(client), "database_replica_skips_total", reason="lagging") >= 5
    assert value(scrape(client), "database_replica_lag_seconds") > 1

    cluster.resume_replay()
    cluster.wait_replayed()
    cluster.pause_replay()  # caught up, then paused with nothing left to replay: lag 0, the replica serves again
    write_event(app, f"{MARK} three: primary only")
    assert "three" not in READS["list API"](client, headers)
    assert any("read replica in use again" in r.getMessage() for r in caplog.records)


@pytest.mark.settings(DATABASE_REPLICA_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/audit")
def test_an_unreachable_replica_is_skipped(app, admin, caplog):
    """A replica that cannot be reached (nothing listens at its address): every read answers, from the primary."""
    client, headers = admin
    caplog.set_level(logging.WARNING, logger="audit_portal.replica")
    write_event(app, f"{MARK} primary only")
    write_error(app, PrimaryOnlyOops)
    for read in READS:
        assert NEWER.get(read, "primary only") in READS[read](client, headers), read
    assert any("read replica skipped" in r.getMessage() and "cannot be reached" in r.getMessage()
               for r in caplog.records)


@pytest.mark.settings(REPLICA_CHECK_SECONDS=3600.0)
def test_a_replica_that_stops_between_checks_is_skipped(app, cluster, admin, caplog):
    """The replica was current at the last check and goes away before the next: a read fails on it and runs again
    on the primary; the page answers 200 with the newest event. The replica is used again once back."""
    client, headers = admin
    write_event(app, f"{MARK} one: on both")
    cluster.wait_replayed()
    assert "on both" in READS["list API"](client, headers)  # checked: current (and kept for an hour)
    caplog.set_level(logging.WARNING, logger="audit_portal.replica")
    cluster.stop_replica()
    try:
        write_event(app, f"{MARK} two: primary only")
        write_error(app, PrimaryOnlyOops)
        for read in ("list API", "viewer", "JSON export", "error dashboard"):
            assert NEWER.get(read, "primary only") in READS[read](client, headers), read
        assert any("failed a read" in r.getMessage() for r in caplog.records)
    finally:
        cluster.start_replica()


@pytest.mark.settings(REPLICA_CHECK_SECONDS=3600.0)
def test_the_lag_check_is_kept_between_requests(app, admin):
    """The replica's lag is checked once per REPLICA_CHECK_SECONDS, not at every request."""
    client, headers = admin
    checks = []
    replica_engine = app.extensions["replica"].engine

    def count(conn, cursor, statement, *args):
        if "pg_last_wal_replay_lsn" in statement:
            checks.append(statement)

    event.listen(replica_engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            READS["list API"](client, headers)
    finally:
        event.remove(replica_engine, "before_cursor_execute", count)
    assert len(checks) == 1
