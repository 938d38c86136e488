"""``audit_portal/audit/integrity/housekeeping.py``: every process's writer runs the housekeeping, but one process
seals and one creates the months ahead; another takes each job over when its holder lets go or dies."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from audit_portal import create_app
from audit_portal.audit.delivery import locks
from audit_portal.audit.integrity.housekeeping import Housekeeping
from audit_portal.audit.record import partitions
from audit_portal.extensions import db

from ..chain_support import CHAIN, count_rows, record_events

ON_POSTGRES = bool(os.environ.get("TEST_DATABASE_URL"))


@pytest.fixture(autouse=True)
def background_jobs_on(app):
    """As in production: the sealer's turn every few seconds, the months ahead checked hourly (tests turn both off)."""
    app.config.update(AUDIT_SEAL_INTERVAL=5, AUDIT_PARTITION_CHECK_SECONDS=3600)


def turn(app, housekeeping: Housekeeping) -> None:
    """One turn, as the writer thread runs it."""
    with app.app_context():
        housekeeping()
        db.session.remove()


def test_one_process_seals_and_another_takes_over_when_it_lets_go(app):
    first, second = Housekeeping(app), Housekeeping(app)  # as the writers of two processes
    try:
        record_events(app, 3)
        turn(app, first)
        assert count_rows(app, CHAIN) == 3
        record_events(app, 2)
        turn(app, second)  # the sealer's lock is the first's: the second leaves the events alone
        assert count_rows(app, CHAIN) == 3
        turn(app, first)
        assert count_rows(app, CHAIN) == 5
        record_events(app, 4)
        first.close()  # its process exits
        turn(app, second)
        assert count_rows(app, CHAIN) == 9
    finally:
        first.close()
        second.close()


@pytest.mark.skipif(not ON_POSTGRES, reason="advisory locks and partitions are PostgreSQL's")
def test_on_postgresql_each_job_is_an_advisory_lock_named_after_its_process(app):
    first, second = Housekeeping(app), Housekeeping(app)
    try:
        turn(app, first)
        turn(app, second)
        with app.app_context(), db.engine.connect() as conn:
            held = conn.execute(text(
                "SELECT l.classid::bigint, l.objid::bigint, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objsubid = 2 "
                "AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )).all()
            months = {p.name for p in partitions.partitions(conn)}
        assert sorted(held) == [(locks.SEALER, 0, f"audit_portal:{os.getpid()}"),
                                (locks.PARTITION_MAINTENANCE, 0, f"audit_portal:{os.getpid()}")]
        assert first.sealer.lock is not None and first.partitions.lock is not None
        assert second.sealer.lock is None and second.partitions.lock is None
        month = partitions.month_of(datetime.now(UTC))
        ahead = app.config["AUDIT_PARTITIONS_AHEAD"]
        assert {partitions.partition_name(partitions.add_months(month, i)) for i in range(ahead + 1)} <= months

        # The holder's connection dies (its server went away): the other takes both jobs at its next turn.
        backends = [first.sealer.lock._connection, first.partitions.lock._connection]
        with app.app_context(), db.engine.connect() as admin:
            for connection in backends:
                pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        turn(app, second)
        assert second.sealer.lock is not None and second.partitions.lock is not None
        turn(app, first)  # it notices its locks are gone, and finds them taken
        assert first.sealer.lock is None and first.partitions.lock is None
    finally:
        first.close()
        second.close()


def test_without_the_background_sealer_the_months_ahead_are_still_made(app):
    """AUDIT_SEAL_INTERVAL=0 (a separate ``flask audit sealer`` seals): the web app's housekeeping leaves sealing
    alone, but keeps making the months ahead, so that no request has to make one in its own transaction."""
    app.config["AUDIT_SEAL_INTERVAL"] = 0
    housekeeping = Housekeeping(app)
    try:
        record_events(app, 2)
        turn(app, housekeeping)
        assert count_rows(app, CHAIN) == 0
        if ON_POSTGRES:
            with app.app_context(), db.engine.connect() as conn:
                months = {p.name for p in partitions.partitions(conn)}
            month = partitions.month_of(datetime.now(UTC))
            assert partitions.partition_name(partitions.add_months(month, app.config["AUDIT_PARTITIONS_AHEAD"])) \
                in months
    finally:
        housekeeping.close()


@pytest.mark.parametrize(("seal", "check", "every"), [(0, 600, 600), (5, 600, 5), (0, 0, 0)])
def test_the_housekeeping_runs_on_the_partition_interval_when_the_sealer_is_off(app_config, seal, check, every):
    app = create_app({**app_config, "AUDIT_SEAL_INTERVAL": seal, "AUDIT_PARTITION_CHECK_SECONDS": check})
    try:
        assert app.extensions["audit_writer"]._housekeeping_every == every
    finally:
        with app.app_context():
            db.engine.dispose()


def test_the_namespaces_are_listed_in_one_place():
    from audit_portal.audit.integrity import seal

    assert seal._ADVISORY_LOCK == locks.SEALER
    assert partitions._LOCK_KEY == locks.PARTITION_CREATION
    namespaces = [locks.SEALER, locks.STREAM_DESTINATION, locks.ALERT_EVALUATOR, locks.PARTITION_MAINTENANCE]
    assert len(set(namespaces)) == len(namespaces)
