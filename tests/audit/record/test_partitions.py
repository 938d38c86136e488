"""Monthly partitions of audit_logs on PostgreSQL: no insert fails for a missing month, replays stay idempotent,
reads by id stay index lookups with two dozen months, `flask audit partitions` makes the months ahead, and the
retention purge drops whole months (and only those it may) while the chain and the error rollup stay right."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from audit_portal.audit.integrity import purge
from audit_portal.audit.integrity.holds import add_hold
from audit_portal.audit.record import partitions
from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.write.inserts import insert_events
from audit_portal.audit.write.store import store_events
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ..chain_support import LOGS, links, seal, verify

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="partitions are PostgreSQL's: set TEST_DATABASE_URL"),
]


def event_at(moment: datetime, description: str = "partitioned", **fields) -> dict:
    return build_event(ActionType.UPDATE, ResourceType.SETTING, "x", description, timestamp=moment, **fields)


def write(app, events: list[dict], **options) -> None:
    with app.app_context(), db.engine.begin() as connection:
        insert_events(connection, events, **options)


def months_present(app) -> list[str]:
    with app.app_context(), db.engine.connect() as conn:
        return [p.name for p in partitions.partitions(conn)]


def stored(app) -> list[tuple[str, datetime]]:
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(select(LOGS.c.description, LOGS.c.timestamp).order_by(LOGS.c.id)).all()


def stored_ids(app) -> list[tuple[int]]:
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(select(LOGS.c.id)).all()


def month(year: int, number: int, day: int = 15) -> datetime:
    return datetime(year, number, day, 12, tzinfo=UTC)


def test_the_table_is_partitioned_with_this_month_and_the_next(app):
    now = utcnow()
    this = partitions.month_of(now)
    with app.app_context(), db.engine.connect() as conn:
        assert partitions.is_partitioned(conn)
        keys = dict(conn.execute(text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'audit_logs'::regclass "
            "AND contype IN ('p', 'u')")).all())
    assert keys == {"pk_audit_logs": 'PRIMARY KEY (id, "timestamp")',
                    "uq_audit_logs_event_id": 'UNIQUE (event_id, "timestamp")'}
    assert months_present(app) == [partitions.partition_name(this),
                                   partitions.partition_name(partitions.next_month(this))]


def test_an_event_of_a_month_without_partition_makes_it_and_is_stored(app):
    old, future = event_at(month(2019, 3), "old"), event_at(month(2031, 11), "future")
    write(app, [old, future])
    write(app, [event_at(month(2019, 3, 20), "old again")])  # the month is there now: nothing more is made

    assert {"audit_logs_2019_03", "audit_logs_2031_11"} <= set(months_present(app))
    assert [d for d, _ in stored(app)] == ["old", "future", "old again"]
    with app.app_context(), db.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit_logs_2019_03")) == 2


def test_a_replay_is_skipped_by_event_id_and_timestamp(app):
    event = event_at(month(2020, 6), "once")
    write(app, [event], ignore_duplicates=True)
    write(app, [event, event_at(month(2020, 6), "another")], ignore_duplicates=True)
    assert [d for d, _ in stored(app)] == ["once", "another"]


def test_a_month_dropped_behind_this_process_is_made_again_by_the_writer(app):
    """Another process (a purge on another server) dropped a month this process had seen: the insert fails once,
    the writer's one-by-one retry makes the month again, and no event is lost or turned into a stand-in."""
    write(app, [event_at(month(2021, 2), "first")])
    with app.app_context():
        engine = db.engine
        with engine.connect() as conn:
            assert partitions.month_of(month(2021, 2)) in partitions._months(conn)  # this process knows the month
        with engine.begin() as conn:  # dropped behind its back (no forget): as another server's purge would
            conn.execute(text("SET LOCAL audit_portal.purge = 'on'"))
            conn.execute(text("DELETE FROM audit_logs WHERE timestamp < '2022-01-01'"))
            conn.exec_driver_sql("ALTER TABLE audit_logs DETACH PARTITION audit_logs_2021_02")
            conn.exec_driver_sql("DROP TABLE audit_logs_2021_02")
        store_events(engine.begin, [event_at(month(2021, 2, 3), "replayed"), event_at(utcnow(), "today")])
    assert sorted(d for d, _ in stored(app)) == ["replayed", "today"]


def test_reads_by_id_are_index_lookups_with_two_dozen_months(app, admin_client):
    start = datetime(2024, 1, 1, tzinfo=UTC)
    moments = [datetime(2024 + (i // 12), i % 12 + 1, 10, tzinfo=UTC) for i in range(26)]
    write(app, [event_at(moment, f"month {i}") for i, moment in enumerate(moments)])
    assert len([name for name in months_present(app) if name >= partitions.partition_name(start.date())]) >= 26
    with app.app_context(), db.engine.connect() as conn:
        target = conn.scalar(select(LOGS.c.id).where(LOGS.c.description == "month 7"))
        plan = "\n".join(conn.execute(text(f"EXPLAIN SELECT * FROM audit_logs WHERE id = {int(target)}")).scalars())
    assert "Seq Scan" not in plan
    assert plan.count("Index Scan") >= 26  # one primary-key probe per month, nothing read in full

    page = admin_client.get(f"/admin/audit-logs/{target}")
    assert page.status_code == 200 and b"month 7" in page.data
    seal(app)
    assert verify(app).ok
    assert len(links(app)) >= 26


def test_the_command_makes_the_months_ahead_and_lists_them(app, runner):
    result = runner.invoke(args=["audit", "partitions", "--ahead", "5"])
    assert result.exit_code == 0, result.output
    first = partitions.month_of(utcnow())
    expected = [partitions.partition_name(partitions.add_months(first, i)) for i in range(6)]
    assert set(expected) <= set(months_present(app))
    for name in expected[2:]:
        assert f"{name}  " in result.output and "(new)" in result.output
    again = runner.invoke(args=["audit", "partitions", "--ahead", "5"])
    assert "0 created" in again.output and "(new)" not in again.output


def error_at(moment: datetime, fingerprint: str = "f" * 64) -> dict:
    return build_event(ActionType.ERROR_OCCURRED, ResourceType.SYSTEM, None, "boom", timestamp=moment, status=Status.ERROR,
                       severity="ERROR", error_type="ValueError", fingerprint=fingerprint)


def rollup_total(app) -> int:
    with app.app_context(), db.engine.connect() as conn:
        return conn.scalar(text("SELECT coalesce(sum(occurrences), 0) FROM audit_error_rollup"))


def test_the_purge_drops_whole_months_and_batches_the_rest(app, runner):
    now = utcnow()
    old_months = [now - timedelta(days=d) for d in (500, 470, 440)]
    events = [event_at(m + timedelta(minutes=i), f"old {k}") for k, m in enumerate(old_months) for i in range(3)]
    events += [error_at(old_months[0]), error_at(old_months[1])]
    cutoff = now - timedelta(days=400)
    edge = partitions.month_of(cutoff)  # the cutoff's own month: its old rows go in batches
    edge_old = max(datetime(edge.year, edge.month, 1, tzinfo=UTC) + timedelta(hours=1), cutoff - timedelta(days=1))
    write(app, events)
    write(app, [event_at(edge_old, "edge old")] if edge_old < cutoff else [])
    write(app, [event_at(now - timedelta(days=3), "young"), error_at(now - timedelta(days=3))])
    seal(app)
    chain = links(app)
    dropped = {partitions.partition_name(partitions.month_of(m)) for m in old_months}

    dry = runner.invoke(args=["audit", "purge", "--older-than-days", "400", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    for name in dropped:
        assert name in dry.output

    result = runner.invoke(args=["audit", "purge", "--older-than-days", "400", "--yes"])
    assert result.exit_code == 0, result.output
    assert not dropped & set(months_present(app))
    for name in dropped:  # the operator sees how long each month held the table
        assert f"Dropped {name} (" in result.output and "audit_logs locked for" in result.output
    remaining = [d for d, _ in stored(app)]
    assert not [d for d in remaining if d.startswith("old") or d == "edge old"]
    assert "young" in remaining
    assert rollup_total(app) == 1  # the dropped months' errors are no longer counted
    assert links(app)[:len(chain)] == chain  # every link stays: the dropped months' events leave tombstones
    report = verify(app)
    assert report.ok, report
    with app.app_context(), db.engine.connect() as conn:
        [metadata] = conn.execute(select(LOGS.c["metadata"])
                                  .where(LOGS.c.action_type == ActionType.RETENTION_PURGE.value)).scalars()
    assert metadata["count"] == len(events) + (edge_old < cutoff)


def request_at(moment: datetime, description: str) -> dict:
    return build_event(ActionType.REQUEST, ResourceType.REQUEST, None, description, timestamp=moment)


def security_at(moment: datetime, description: str) -> dict:
    return build_event(ActionType.PASSWORD_CHANGE, ResourceType.USER, "1", description, timestamp=moment)


@pytest.mark.settings(AUDIT_RETENTION_DAYS=180, AUDIT_RETENTION_DAYS_BY_CATEGORY="requests=90,security=2555")
def test_a_month_is_dropped_whole_only_when_every_row_in_it_goes(app, runner):
    """Per category: a month of requests (and data) past retention goes as a table, even with an old event sealed
    after a young one; a month holding a security event (kept 2555 days) or an event inside a legal hold stays, and
    only its other events go, in batches."""
    now = utcnow()
    whole, security, held = (now - timedelta(days=d) for d in (500, 440, 380))
    write(app, [request_at(whole, "request"), event_at(whole + timedelta(minutes=1), "data")])
    write(app, [request_at(security, "request beside security"), security_at(security, "security")])
    write(app, [request_at(held, "request beside held"), event_at(held + timedelta(hours=1), "held")])
    seal(app)
    write(app, [event_at(now - timedelta(days=2), "young")])
    seal(app)
    write(app, [request_at(whole + timedelta(minutes=2), "request, replayed late")])
    seal(app)
    with app.app_context():
        hold_start = held + timedelta(minutes=30)
        add_hold(None, hold_start, hold_start + timedelta(hours=1), "Case 9")
        db.session.commit()
    chain = links(app)
    name = {moment: partitions.partition_name(partitions.month_of(moment)) for moment in (whole, security, held)}
    with app.app_context():
        plan = purge.plan_purge()
        db.session.remove()
    assert [d.name for d in plan.drops if d.count] == [name[whole]]

    result = runner.invoke(args=["audit", "purge", "--yes"])

    assert result.exit_code == 0, result.output
    assert f"Dropped {name[whole]} (3 events)" in result.output
    assert name[whole] not in months_present(app)
    assert {name[security], name[held]} <= set(months_present(app))
    assert sorted(d for d, _ in stored(app) if not d.startswith(("Retention purge", "Legal hold"))) == [
        "held", "security", "young"]
    assert links(app)[:len(chain)] == chain
    report = verify(app)
    assert report.ok and report.purged == 5, report


def store_sealed_old_month(app) -> str:
    """One sealed event 500 days old; its month's name."""
    old = utcnow() - timedelta(days=500)
    write(app, [event_at(old, "old")])
    seal(app)
    return partitions.partition_name(partitions.month_of(old))


def plan_dropping(app, name: str):
    """The purge of everything older than 400 days, which drops ``name`` whole; lock waits of 50 ms."""
    app.config["AUDIT_PARTITION_LOCK_TIMEOUT_MS"] = 50
    with app.app_context():
        plan = purge.plan_purge(400)
        db.session.remove()
    assert [d.name for d in plan.drops] == [name]
    return plan


def purge_while_held(app, plan, holder, release, event: dict) -> int:
    """Run ``plan`` in a thread while ``holder`` (an open transaction) holds off its locks: ``event`` is stored at
    once meanwhile (not queued behind the purge's lock requests) and the purge still waits; once ``release``d, the
    purge completes. Returns what it deleted."""
    done = {}

    def run_purge():
        with app.app_context():
            done["deleted"] = purge.execute_purge(plan)

    worker = threading.Thread(target=run_purge)
    worker.start()
    try:
        inserted = threading.Thread(target=write, args=(app, [event]))
        began = time.monotonic()
        inserted.start()
        inserted.join(timeout=20)
        assert not inserted.is_alive()
        assert time.monotonic() - began < 5  # the holder keeps its locks for 20 s and more
        assert worker.is_alive()  # the purge is still waiting for the holder
    finally:
        release()
        holder.close()
        worker.join(timeout=60)
    return done["deleted"]


def test_the_drop_waits_its_turn_without_holding_up_inserts(app):
    """A reader holds audit_logs (a long export): the detach cannot take its lock, and while it keeps trying, an
    insert still goes through at once instead of queueing behind it; once the reader is done the drop happens."""
    name = store_sealed_old_month(app)
    plan = plan_dropping(app, name)
    with app.app_context():
        reader = db.engine.connect()
    reader.begin()
    reader.execute(select(func.count()).select_from(LOGS))  # ACCESS SHARE on audit_logs until it ends

    assert purge_while_held(app, plan, reader, reader.rollback, event_at(utcnow(), "during the purge")) == 1
    assert name not in months_present(app)
    assert "during the purge" in [d for d, _ in stored(app)]


def test_a_request_holding_its_user_delays_the_drop_but_does_not_fail_it(app, make_user):
    """Detaching a month and dropping it lock users (its foreign key's triggers live there): a request in the
    middle of a transaction that changed a user holds that off. The purge waits its turn and completes;
    meanwhile other requests still store events about that user."""
    name = store_sealed_old_month(app)
    user_id = make_user("carol")  # after: its creation (an event of today) must not start the chain
    plan = plan_dropping(app, name)
    with app.app_context():
        request = db.engine.connect()
    request.begin()
    request.execute(text("UPDATE users SET full_name = 'Carol' WHERE id = :id"), {"id": user_id})

    meanwhile = event_at(utcnow(), "meanwhile", user_id=user_id)
    assert purge_while_held(app, plan, request, request.commit, meanwhile) == 1
    with app.app_context(), db.engine.connect() as conn:
        left = conn.execute(text("SELECT relname FROM pg_class WHERE relname IN (:a, :b)"),
                            {"a": name, "b": partitions.detached_name(name)}).scalars().all()
    assert left == []
    assert "meanwhile" in [d for d, _ in stored(app)]
    assert links(app)[0].audit_log_id not in [i for i, in stored_ids(app)]  # its link stays: a tombstone
    assert verify(app).ok


def test_a_month_emptied_by_earlier_purges_is_dropped(app, runner):
    """A daily purge deletes the oldest day's events in batches, so by the time a month lies wholly before the
    cutoff it is empty: it is dropped then, rather than left to pile up (every read by id probes each month)."""
    old = partitions.month_of(utcnow() - timedelta(days=500))
    with app.app_context():
        partitions.create_months(db.engine, [old])
    name = partitions.partition_name(old)
    assert name in months_present(app)
    result = runner.invoke(args=["audit", "purge", "--older-than-days", "400", "--yes"])
    assert result.exit_code == 0, result.output
    assert f"Dropped the empty months {name}" in result.output
    assert name not in months_present(app)
    assert partitions.partition_name(partitions.month_of(utcnow())) in months_present(app)
    assert verify(app).ok


def leftovers(app) -> list[str]:
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(text("SELECT relname FROM pg_class WHERE relname LIKE 'audit!_logs!_purged!_%' "
                                 "ESCAPE '!'")).scalars().all()


def test_a_month_detached_by_an_interrupted_purge_is_dropped_by_the_maintenance(app, runner, monkeypatch):
    """A purge that stops between its detach and its drop (a crash, a restart) leaves the month detached and
    renamed, its events already purged and the cut recorded: verification passes, and the next partition
    maintenance (or purge) drops it."""
    old = utcnow() - timedelta(days=500)
    write(app, [event_at(old, "old")])
    seal(app)
    real_drop = partitions.drop_detached
    monkeypatch.setattr(partitions, "drop_detached", lambda *args, **kwargs: [])  # stops after the detach
    with app.app_context():
        plan = purge.plan_purge(400)
        purge.execute_purge(plan)
        db.session.remove()
    assert leftovers(app) == [partitions.detached_name(d.name) for d in plan.drops] != []
    assert verify(app).ok
    assert "old" not in [d for d, _ in stored(app)]

    monkeypatch.setattr(partitions, "drop_detached", real_drop)
    result = runner.invoke(args=["audit", "partitions"])
    assert result.exit_code == 0, result.output
    assert leftovers(app) == []


def test_model_reads_still_use_the_orm(app):
    write(app, [event_at(month(2022, 8), "via orm")])
    with app.app_context():
        log = db.session.scalars(select(AuditLog).where(AuditLog.description == "via orm")).one()
        assert db.session.get(AuditLog, log.id).description == "via orm"
        db.session.remove()
