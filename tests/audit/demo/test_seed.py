"""``flask demo seed``: realistic demo events of every kind, marked as demo data."""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select, text

from audit_portal.audit.demo import bulk, seed
from audit_portal.audit.demo.seed import COLUMNS, NOT_SEEDED, SCENARIOS, generate, generate_chunks
from audit_portal.audit.record.enums import ActionType, ErrorSeverity, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.extensions import db

PRODUCTION = {"APP_ENV": "production", "AUDIT_HMAC_KEY": "k" * 40}
#: Every action type, except those that carry integrity state (a new action type needs a scenario).
SEEDED_ACTIONS = set(ActionType.values()) - NOT_SEEDED


def _demo(rows) -> list:
    return [row for row in rows if (row.event_metadata or {}).get("demo") is True]


def test_seed_fills_the_log_with_every_kind_of_event(runner, make_user, audit_rows):
    users = {make_user(name): name for name in ("alice", "bob")}
    result = runner.invoke(args=["demo", "seed", "--count", "500", "--days", "10"])
    assert result.exit_code == 0, result.output
    assert "Inserted 500 demo events." in result.output
    rows = audit_rows()
    demo = _demo(rows)
    assert len(demo) == 500 and len(rows) == 502  # plus the two CREATE events of make_user
    assert {row.action_type for row in demo} == SEEDED_ACTIONS
    assert {row.status for row in demo} == set(Status.values())
    assert {row.severity for row in demo} - {None} == set(ErrorSeverity.values())
    assert {row.user_id for row in demo} == {*users, None}
    assert {row.username for row in demo if row.user_id} == set(users.values())
    assert len({row.ip_address for row in demo}) > 5 and len({row.user_agent for row in demo}) > 2
    span = max(row.timestamp for row in demo) - min(row.timestamp for row in demo)
    assert 9 <= span.days <= 10


def test_seeded_errors_look_real_and_repeat(runner, audit_rows):
    runner.invoke(args=["demo", "seed", "--count", "500"])
    errors = [row for row in audit_rows(status="ERROR") if row.error_type]
    assert errors and all(row.stack_trace.startswith("Traceback (most recent call last):") for row in errors)
    assert all(row.severity and row.fingerprint for row in errors)
    repeated = Counter(row.fingerprint for row in errors)
    assert max(repeated.values()) > 1  # occurrences of one error group together


def test_even_a_handful_of_events_covers_every_action_type():
    events = list(generate(len(SCENARIOS), [(None, None)], seed=1))
    assert {event["action_type"] for event in events} == SEEDED_ACTIONS


def test_a_handful_of_events_in_small_chunks_still_covers_every_action_type():
    chunks = list(generate_chunks(len(SCENARIOS), [(1, "alice")], seed=1, chunk_rows=7))
    assert [len(chunk.lines) for chunk in chunks][:2] == [7, 7]
    events = [seed.event_from_line(COLUMNS, line) for chunk in chunks for line in chunk.lines]
    assert {event["action_type"] for event in events} == SEEDED_ACTIONS


def test_the_same_seed_gives_the_same_events():
    def content(seed):
        # Everything but the event id (unique: this millisecond and random bits) and the time (seeding's own).
        return [{k: v for k, v in e.items() if k not in ("event_id", "timestamp")}
                for e in generate(300, [(1, "a"), (2, "b")], seed=seed)]

    assert content(7) == content(7) != content(8)


def _built_again(event: dict) -> dict:
    return build_event(
        event["action_type"], event["resource_type"], event["resource_id"], event["description"],
        timestamp=event["timestamp"], user_id=event["user_id"], username=event["username"], metadata=event["metadata"],
        ip_address=event["ip_address"], user_agent_=event["user_agent"], status=event["status"],
        is_sensitive=event["is_sensitive"], severity=event["severity"], error_type=event["error_type"],
        stack_trace=event["stack_trace"], fingerprint=event["fingerprint"], request_id_=event["request_id"],
        http_method=event["http_method"], path=event["path"], status_code=event["status_code"],
        duration_ms=event["duration_ms"], event_id=event["event_id"])


@pytest.mark.parametrize("demo", [True, False])
def test_every_seeded_event_is_what_build_event_makes_of_it(demo):
    """The seed writes rows directly, from texts cleaned once: each must be the row the app's own builder makes."""
    users = [(1, "alice"), (2, "bob.smith"), (3, "pin-admin"), (None, None)]
    events = list(generate(3000, users, demo=demo, seed=3))
    assert [event for event in events if _built_again(event) != event] == []
    assert len({event["event_id"] for event in events}) == len(events)
    assert all(((event["metadata"] or {}).get("demo") is True) == demo for event in events)


def test_seeded_events_come_oldest_first_over_the_days_asked_for():
    stamps = [event["timestamp"] for event in generate(2000, [(1, "a")], days=3, seed=2)]
    assert all(stamp.tzinfo is not None for stamp in stamps)
    assert 2.99 < (stamps[-1] - stamps[0]).total_seconds() / 86400 <= 3
    assert stamps == sorted(stamps)  # each is jittered by less than the gap to the next


class RecordingBar:
    """A progress bar that notes, at each update, how many rows the database holds."""

    def __init__(self):
        self.updates: list[tuple[int, int]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def update(self, n: int) -> None:
        stored = db.session.scalar(select(func.count()).select_from(AuditLog))
        db.session.rollback()
        self.updates.append((n, stored))


def test_progress_counts_rows_as_they_are_committed(app, monkeypatch):
    monkeypatch.setattr(seed, "CHUNK_ROWS", 40)
    bar = RecordingBar()
    with app.app_context():
        written = bulk.load_chunks(generate_chunks(150, [(None, None)]), COLUMNS, 150, progress=lambda: bar)
    assert written == 150
    assert [n for n, _ in bar.updates] == [40, 40, 40, 30]
    assert [stored for _, stored in bar.updates] == [40, 80, 120, 150]


def test_the_cli_shows_a_progress_bar(runner):
    result = runner.invoke(args=["demo", "seed", "--count", "20"])
    assert result.exit_code == 0, result.output
    assert "Seeding audit events" in result.output and "Inserted 20 demo events." in result.output


def test_a_seeded_log_verifies(runner, make_user):
    make_user("alice")
    assert runner.invoke(args=["demo", "seed", "--count", "300"]).exit_code == 0
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "OK: the audit chain is intact (301 events" in result.output


def test_a_seed_over_many_months_stores_every_event(runner, audit_rows):
    """On PostgreSQL every month the rows fall in gets its partition, those between the first and last too."""
    result = runner.invoke(args=["demo", "seed", "--count", "400", "--days", "400"])
    assert result.exit_code == 0, result.output
    rows = audit_rows()
    assert len(rows) == 400
    assert len({(row.timestamp.year, row.timestamp.month) for row in rows}) >= 13


def test_rows_made_ahead_arrive_in_order_and_errors_reach_the_consumer():
    assert list(bulk.made_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("broken generator")

    with pytest.raises(ValueError, match="broken generator"):
        list(bulk.made_ahead(failing()))


def test_leaving_early_stops_the_thread_that_makes_rows():
    made = []

    def endless():
        while True:
            made.append(1)
            yield len(made)

    before = threading.active_count()
    items = bulk.made_ahead(endless())
    assert [next(items) for _ in range(3)] == [1, 2, 3]
    items.close()
    assert threading.active_count() == before
    assert len(made) <= 3 + 2 + 1  # what was taken, what waited in line, and the one being handed over


@pytest.mark.settings(**PRODUCTION)
def test_production_asks_before_seeding_and_stops_on_no(runner, audit_rows):
    result = runner.invoke(args=["demo", "seed", "--count", "5"], input="n\n")
    assert result.exit_code == 1
    assert "PRODUCTION audit log?" in result.output and "Aborted" in result.output
    assert audit_rows() == []


@pytest.mark.settings(**PRODUCTION)
def test_production_seeds_after_confirmation(runner, audit_rows):
    result = runner.invoke(args=["demo", "seed", "--count", "5"], input="y\n")
    assert result.exit_code == 0, result.output
    assert len(_demo(audit_rows())) == 5


@pytest.mark.settings(**PRODUCTION)
def test_production_seeds_without_asking_given_yes(runner, audit_rows):
    result = runner.invoke(args=["demo", "seed", "--count", "5", "--yes"])
    assert result.exit_code == 0, result.output
    assert "PRODUCTION" not in result.output
    rows = audit_rows()
    assert len(rows) == len(_demo(rows)) == 5


def test_seed_does_not_ask_outside_production(runner, audit_rows):
    result = runner.invoke(args=["demo", "seed", "--count", "3"])
    assert result.exit_code == 0 and "PRODUCTION" not in result.output
    assert len(audit_rows()) == 3


@pytest.mark.parametrize("count", ["0", "-5", "lots"])
def test_a_bad_count_is_refused(runner, count):
    result = runner.invoke(args=["demo", "seed", "--count", count])
    assert result.exit_code == 2 and "--count" in result.output


POSTGRES_ONLY = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL's: set TEST_DATABASE_URL")


@pytest.mark.postgres_only
@POSTGRES_ONLY
def test_a_large_postgresql_seed_rebuilds_every_index_it_dropped(app, runner, monkeypatch):
    monkeypatch.setattr(bulk, "REBUILD_INDEXES_FROM", 100)
    parent = text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_logs' ORDER BY 1")
    # Each partition (the seed makes last month's) has one index per index of the table, all valid.
    per_partition = text(
        "SELECT i.inhrelid::regclass::text, count(x.indexrelid), bool_and(x.indisvalid) FROM pg_inherits i "
        "LEFT JOIN pg_index x ON x.indrelid = i.inhrelid WHERE i.inhparent = 'audit_logs'::regclass GROUP BY 1")
    with app.app_context(), db.engine.connect() as connection:
        before = connection.execute(parent).all()
    result = runner.invoke(args=["demo", "seed", "--count", "300", "--days", "40"])
    assert result.exit_code == 0, result.output
    assert "Dropped" in result.output and "Rebuilding indexes..." in result.output
    with app.app_context(), db.engine.connect() as connection:
        after = connection.execute(parent).all()
        partitions = connection.execute(per_partition).all()
        stored = connection.execute(select(func.count()).select_from(AuditLog)).scalar()
    assert after == before and stored == 300
    assert len(partitions) >= 2 and {(count, valid) for _, count, valid in partitions} == {(len(before), True)}


@pytest.mark.postgres_only
@POSTGRES_ONLY
def test_a_postgresql_seed_ends_with_vacuum_analyze(app, runner, audit_rows):
    """Without it a bounded count over a fresh seed read the heap (a bitmap heap scan) instead of the index
    alone, until autovacuum came by."""
    result = runner.invoke(args=["demo", "seed", "--count", "50"])
    assert result.exit_code == 0, result.output
    with app.app_context(), db.engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        # audit_logs is partitioned by month: the rows, and so the statistics, are its partitions'.
        tables = connection.exec_driver_sql(
            "SELECT s.last_vacuum, s.last_analyze, c.relallvisible, c.relpages FROM pg_stat_user_tables s "
            "JOIN pg_class c ON c.oid = s.relid JOIN pg_inherits i ON i.inhrelid = c.oid "
            "WHERE i.inhparent = 'audit_logs'::regclass AND c.relpages > 0").all()
    assert tables
    for vacuumed, analysed, all_visible, pages in tables:
        assert vacuumed is not None and analysed is not None
        assert all_visible == pages > 0  # every page of the table is marked all-visible: index-only scans work
