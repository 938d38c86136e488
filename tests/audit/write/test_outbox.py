"""The transactional outbox (PostgreSQL): a domain event commits with its change into ``audit_outbox`` and the
background writer moves it into ``audit_logs``, once, keeping its id and time; nothing is lost on the way."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select, text

from audit_portal.audit.integrity.seal import seal
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditChainLink, AuditLog
from audit_portal.audit.write import outbox, writer
from audit_portal.audit.write.service import log_audit
from audit_portal.extensions import db
from audit_portal.users import services as user_services
from audit_portal.users.models import User

postgres_only = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                                   reason="the outbox is PostgreSQL's: set TEST_DATABASE_URL")


@pytest.fixture
def app_config(app_config):
    """The writer waits a minute before a batch unless hurried: what is in the outbox stays there until a test
    flushes, so that each step can be observed."""
    app_config.setdefault("AUDIT_WRITE_DELAY_MS", 60_000)  # unless the test's settings say otherwise
    return app_config


def _outbox_ids(app) -> list[str]:
    with app.app_context():
        return [row[0] for row in db.session.execute(text("SELECT payload->>'event_id' FROM audit_outbox"))]


def _stored(app, event_id: str) -> AuditLog | None:
    with app.app_context():
        row = db.session.scalar(select(AuditLog).where(AuditLog.event_id == event_id))
        db.session.expunge_all()
        return row


def _edit(app, admin_id: int, user_id: int, full_name: str) -> None:
    assert app.extensions["audit_writer"].flush()  # the users' own CREATE events out of the way first
    with app.app_context():
        user_services.update_user(db.session.get(User, admin_id), db.session.get(User, user_id), full_name=full_name)
        db.session.commit()


def _event_of(app, full_name: str) -> str:
    """The event id of the UPDATE that set ``full_name``, wherever it is (outbox or audit_logs)."""
    with app.app_context():
        found = db.session.execute(text(
            "SELECT payload->>'event_id' FROM audit_outbox WHERE payload->'metadata'->'new'->>'full_name' = :n "
            "UNION ALL SELECT event_id FROM audit_logs WHERE metadata->'new'->>'full_name' = :n"), {"n": full_name})
        return found.scalar_one()


@postgres_only
def test_a_change_commits_its_event_into_the_outbox_and_the_writer_moves_it(app, make_user, admin_id):
    bob = make_user("bob")
    _edit(app, admin_id, bob, "Robert One")
    event_id = _event_of(app, "Robert One")
    assert _outbox_ids(app) == [event_id] and _stored(app, event_id) is None  # committed, not yet moved

    assert app.extensions["audit_writer"].flush()
    row = _stored(app, event_id)
    assert (row.action_type, row.user_id, row.resource_id) == ("UPDATE", admin_id, str(bob))
    assert row.event_metadata["new"] == {"full_name": "Robert One"}
    assert _outbox_ids(app) == []


@postgres_only
def test_an_event_keeps_its_time_through_the_outbox(app):
    when = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
    with app.app_context():
        event_id = log_audit(None, ActionType.CREATE, ResourceType.SETTING, "pi", "Set pi", timestamp=when,
                             transactional=True)
        db.session.commit()
    assert app.extensions["audit_writer"].flush()
    assert _stored(app, event_id).timestamp == when  # in March's partition, made for it if it had none


@postgres_only
def test_a_change_that_rolls_back_leaves_no_event(app, make_user, admin_id):
    bob = make_user("bob")
    assert app.extensions["audit_writer"].flush()
    with app.app_context():
        user_services.update_user(db.session.get(User, admin_id), db.session.get(User, bob), full_name="Never")
        db.session.rollback()
    assert _outbox_ids(app) == []
    assert app.extensions["audit_writer"].flush()
    with app.app_context():
        assert db.session.get(User, bob).full_name != "Never"
        assert db.session.scalar(select(AuditLog).where(AuditLog.description.contains("Never"))) is None


def _orphans(app, count: int, user_id=None) -> list[str]:
    """``count`` events in the outbox as a process would leave them that committed and died before moving them."""
    events = [build_event(ActionType.UPDATE, ResourceType.SETTING, i, f"orphan {i}", timestamp=datetime.now(UTC),
                          user_id=user_id) for i in range(count)]
    with app.app_context(), db.engine.begin() as connection:
        for event in events:
            outbox.add(connection, event)
    return [event["event_id"] for event in events]


@postgres_only
def test_an_idle_writer_moves_what_a_dead_process_left(app, monkeypatch):
    monkeypatch.setattr(writer, "REPLAY_INTERVAL_S", 0.1)
    ids = _orphans(app, 3)
    app.extensions["audit_writer"].start()  # nobody flushes or commits: the idle writer looks by itself
    deadline = time.monotonic() + 10
    while _outbox_ids(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_stored(app, event_id) is not None for event_id in ids)
    assert _outbox_ids(app) == []


@postgres_only
def test_two_processes_moving_at_once_move_each_event_once(app, app_config):
    from audit_portal import create_app

    ids = _orphans(app, 1_200)  # more than one move takes
    other = create_app(dict(app_config))
    moved = []

    def move(application):
        with application.app_context():
            moved.append(outbox.move_all(db.engine.begin))

    threads = [threading.Thread(target=move, args=(a,)) for a in (app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    other.extensions["audit_writer"].close()
    assert sum(moved) == 1_200  # SKIP LOCKED: each row taken by one of them, none twice
    with app.app_context():
        stored = db.session.scalars(select(AuditLog.event_id).where(AuditLog.event_id.in_(ids))).all()
    assert sorted(stored) == sorted(ids) and _outbox_ids(app) == []


@postgres_only
def test_a_refused_event_is_salvaged_and_the_others_still_move(app, make_user):
    gone = make_user("gone")
    [orphan] = _orphans(app, 1, user_id=gone)
    others = _orphans(app, 2)
    with app.app_context():  # the user is deleted before the move: the event's user reference is refused
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": gone})
        db.session.commit()
    assert app.extensions["audit_writer"].flush()
    salvaged = _stored(app, orphan)
    assert salvaged.user_id is None and f"user id {gone} was not found" in salvaged.event_metadata["audit_note"]
    assert all(_stored(app, event_id) is not None for event_id in others) and _outbox_ids(app) == []


@postgres_only
def test_with_the_database_away_the_outbox_keeps_its_rows_and_the_writer_its_events(app, make_user, admin_id):
    bob = make_user("bob")
    _edit(app, admin_id, bob, "Robert Away")
    domain_event = _event_of(app, "Robert Away")
    audit_writer = app.extensions["audit_writer"]
    unreachable = create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none?connect_timeout=1")
    real_engine = audit_writer._engine
    audit_writer._engine = lambda: unreachable
    with app.app_context():
        request_event = log_audit(None, ActionType.REQUEST, ResourceType.REQUEST, None, "GET / answered 200")
    assert audit_writer.flush()
    assert audit_writer.spool.pending_bytes() > 0  # the writer's own event is spooled
    assert _outbox_ids(app) == [domain_event]  # the domain event waits where it committed

    audit_writer._engine = real_engine
    assert audit_writer.replay_spool() == 1 and audit_writer.flush()
    assert _stored(app, request_event) is not None and _stored(app, domain_event) is not None
    assert _outbox_ids(app) == []


@postgres_only
def test_a_seal_covers_the_events_still_in_the_outbox(app, make_user, admin_id):
    bob = make_user("bob")
    _edit(app, admin_id, bob, "Robert Sealed")
    event_id = _event_of(app, "Robert Sealed")
    with app.app_context():
        seal()
        row = db.session.scalar(select(AuditLog).where(AuditLog.event_id == event_id))
        assert row is not None
        assert db.session.scalar(select(AuditChainLink).where(AuditChainLink.audit_log_id == row.id)) is not None


@postgres_only
def test_with_the_outbox_off_the_event_goes_straight_into_audit_logs(app, make_user, admin_id):
    bob = make_user("bob")
    assert app.extensions["audit_writer"].flush()  # the admin's and bob's CREATE events moved
    app.config["AUDIT_OUTBOX"] = False
    with app.app_context():  # no flush this time
        user_services.update_user(db.session.get(User, admin_id), db.session.get(User, bob), full_name="Robert Direct")
        db.session.commit()
    assert _outbox_ids(app) == [] and _stored(app, _event_of(app, "Robert Direct")) is not None


def test_sqlite_stores_the_event_with_its_change(app, make_user, admin_id):
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("SQLite's path")
    bob = make_user("bob")
    _edit(app, admin_id, bob, "Robert Lite")
    with app.app_context():  # no flush: the row committed with the change
        row = db.session.scalar(select(AuditLog).where(AuditLog.action_type == "UPDATE"))
        assert row.event_metadata["new"] == {"full_name": "Robert Lite"}
        assert db.session.execute(text("SELECT count(*) FROM audit_outbox")).scalar() == 0


def _wait_until_stored(app, event_id: str, seconds: float = 10) -> AuditLog | None:
    deadline = time.monotonic() + seconds
    while (row := _stored(app, event_id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return row


@postgres_only
@pytest.mark.settings(AUDIT_WRITE_DELAY_MS=50)
def test_a_commit_alone_has_the_running_writer_move_its_event(app, make_user, admin_id, monkeypatch):
    monkeypatch.setattr(writer, "REPLAY_INTERVAL_S", 60)  # no idle pass can do it instead: only the wake-up
    app.extensions["audit_writer"].start()  # as in a web worker
    bob = make_user("bob")
    with app.app_context():  # no flush from here on
        user_services.update_user(db.session.get(User, admin_id), db.session.get(User, bob), full_name="Robert Woken")
        db.session.commit()
    assert _wait_until_stored(app, _event_of(app, "Robert Woken")) is not None


@postgres_only
@pytest.mark.settings(AUDIT_WRITE_DELAY_MS=50)
def test_a_savepoint_rolled_back_before_the_commit_does_not_delay_the_move(app, make_user, admin_id, monkeypatch):
    monkeypatch.setattr(writer, "REPLAY_INTERVAL_S", 60)  # no idle pass can do it instead: only the wake-up
    app.extensions["audit_writer"].start()
    bob = make_user("bob")
    assert app.extensions["audit_writer"].flush()
    with app.app_context():
        user_services.update_user(db.session.get(User, admin_id), db.session.get(User, bob), full_name="Robert Nested")
        savepoint = db.session.begin_nested()
        savepoint.rollback()  # e.g. a uniqueness check that failed and was handled
        db.session.commit()
    assert _wait_until_stored(app, _event_of(app, "Robert Nested")) is not None


@postgres_only
def test_a_process_without_a_writer_thread_moves_its_events_at_exit(app, make_user, admin_id):
    """A command (no request, no writer thread) leaves its events in the outbox until it exits."""
    bob = make_user("bob")
    _edit(app, admin_id, bob, "Robert Exits")
    event_id = _event_of(app, "Robert Exits")
    app.extensions["audit_writer"].close()  # what atexit does
    assert _stored(app, event_id) is not None and _outbox_ids(app) == []


@postgres_only
def test_an_event_no_month_can_hold_fails_with_its_change(app, make_user, admin_id):
    """As the direct insert did: an event that could never be stored refuses its change, instead of committing
    into the outbox a row no move could store."""
    bob = make_user("bob")
    with app.app_context():
        with pytest.raises(ValueError):
            log_audit(admin_id, ActionType.UPDATE, ResourceType.USER, bob, "Far future",
                      timestamp=datetime(9999, 12, 31, 23, 0, tzinfo=UTC), transactional=True)
        db.session.rollback()
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM audit_outbox WHERE payload->>'description' = "
                                       "'Far future'")).scalar() == 0


@postgres_only
def test_a_row_that_cannot_be_read_back_does_not_hold_up_the_writer(app):
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("""INSERT INTO audit_outbox (payload) VALUES ('{"event_id": "x", "timestamp": "soon"}')"""))
        request_event = log_audit(None, ActionType.REQUEST, ResourceType.REQUEST, None, "GET / answered 200")
    assert app.extensions["audit_writer"].flush()
    assert _stored(app, request_event) is not None and _outbox_ids(app) == []
    with app.app_context():
        [kept] = db.session.scalars(select(AuditLog).where(AuditLog.action_type == "AUDIT_FAILURE")).all()
        assert '"soon"' in kept.event_metadata["refused_event"]


@postgres_only
def test_rows_committed_with_the_outbox_on_are_moved_after_it_is_turned_off(app):
    ids = _orphans(app, 2)
    app.config["AUDIT_OUTBOX"] = False
    assert app.extensions["audit_writer"].flush()
    assert all(_stored(app, event_id) is not None for event_id in ids) and _outbox_ids(app) == []
