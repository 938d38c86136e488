"""``flask demo seed``: realistic demo events of every kind, marked as demo data."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from audit_portal.audit.demo.seed import NOT_SEEDED, SCENARIOS, generate
from audit_portal.audit.record.enums import ActionType, ErrorSeverity, Status
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


def test_the_same_seed_gives_the_same_events():
    def content(seed):
        return [(e["action_type"], e["description"], e["status"]) for e in generate(200, [(1, "a")], seed=seed)]

    assert content(7) == content(7) != content(8)


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


@pytest.mark.postgres_only
@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="VACUUM is PostgreSQL's: set TEST_DATABASE_URL")
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
