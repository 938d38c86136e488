"""Retention: `flask audit purge` deletes the sealed events past their category's retention (or past
`--older-than-days`), never one inside a legal hold or one sealed after the head it read, in bounded batches; their
chain links stay as tombstones, and an audit_purges row and a RETENTION_PURGE event record the purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, event, select

from audit_portal.audit.integrity import purge, purge_plan
from audit_portal.audit.integrity.holds import add_hold
from audit_portal.audit.integrity.models import AuditPurge
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.write.service import log_audit
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ..chain_support import CHAIN, LOGS, count_rows, links, record_events, row, seal, tamper, verify

RETENTION = {"AUDIT_RETENTION_DAYS": 180, "AUDIT_RETENTION_DAYS_BY_CATEGORY": "requests=90,security=2555"}
#: One action per category the tests use: (action, resource).
KINDS = {"requests": (ActionType.REQUEST, ResourceType.REQUEST),
         "authentication": (ActionType.LOGIN, ResourceType.SESSION),
         "security": (ActionType.PASSWORD_CHANGE, ResourceType.USER),
         "data": (ActionType.UPDATE, ResourceType.SETTING)}


def purge_cli(runner, *args, input=None):
    return runner.invoke(args=["audit", "purge", *args], input=input)


def purge_events(app) -> list[dict]:
    with app.app_context(), db.engine.connect() as conn:
        return [m for (m,) in conn.execute(select(LOGS.c["metadata"])
                                           .where(LOGS.c.action_type == ActionType.RETENTION_PURGE.value)
                                           .order_by(LOGS.c.id))]


def purge_rows(app) -> list[dict]:
    with app.app_context(), db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(AuditPurge.__table__).order_by(AuditPurge.id))]


def existing(app, ids) -> list[int]:
    with app.app_context(), db.engine.connect() as conn:
        return list(conn.scalars(select(LOGS.c.id).where(LOGS.c.id.in_(ids)).order_by(LOGS.c.id)))


def record(app, category: str, days_ago: float, label: str | None = None) -> int:
    """One committed event of ``category``, ``days_ago`` days old; its id."""
    action, resource = KINDS[category]
    with app.app_context():
        event_id = log_audit(None, action, resource, None, label or f"{category} {days_ago} days ago",
                             timestamp=utcnow() - timedelta(days=days_ago), transactional=True)
        db.session.commit()
        assert app.extensions["audit_writer"].flush()  # out of the outbox (PostgreSQL)
        audit_id = db.session.scalar(select(LOGS.c.id).where(LOGS.c.event_id == event_id))
        db.session.remove()
        return audit_id


def hold(app, days_from: float, days_to: float, reason: str = "Case 17") -> int:
    with app.app_context():
        now = utcnow()
        placed = add_hold(None, now - timedelta(days=days_from), now - timedelta(days=days_to), reason)
        db.session.commit()
        return placed.id


def test_dry_run_says_what_would_go_per_category_and_deletes_nothing(app, runner):
    old = record_events(app, 6, days_ago=400, label="old")
    recent = record_events(app, 3, days_ago=10, label="recent")
    first, last = row(app, old[0])["timestamp"], row(app, old[-1])["timestamp"]

    result = purge_cli(runner, "--older-than-days", "365", "--dry-run")

    assert result.exit_code == 0, result.output
    assert (f"Dry run: would delete 6 events from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC "
            "(older than 365 days)") in result.output
    assert "  data: 6" in result.output
    assert existing(app, old + recent) == old + recent
    assert purge_events(app) == [] and purge_rows(app) == []


@pytest.mark.settings(**RETENTION)
def test_without_older_than_days_each_category_keeps_its_own_retention_and_the_hold_keeps_its_range(app, runner):
    """The issue's case: three categories with their own retention (requests 90 days, security 2555, the rest 180)
    and one legal hold: exactly the events past their category's retention and outside the hold go."""
    gone = [record(app, "requests", 100), record(app, "requests", 200), record(app, "data", 200),
            record(app, "authentication", 400), record(app, "data", 3000)]
    kept = [record(app, "requests", 50), record(app, "data", 100), record(app, "authentication", 100),
            record(app, "security", 400), record(app, "security", 2000)]
    held = [record(app, "requests", 300), record(app, "data", 310), record(app, "security", 3000)]
    hold(app, 320, 295)  # holds the 300- and 310-day-old events; the 3000-day-old security one is past even 2555
    held_too_old = held.pop()  # ... and outside the hold: it goes
    gone.append(held_too_old)

    dry = purge_cli(runner, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Retention for requests: events before" in dry.output
    assert "Retention for other categories: events before" in dry.output
    assert "2 event(s) past retention are kept by legal holds" in dry.output
    for line in ("  requests: 2", "  data: 2", "  authentication: 1", "  security: 1"):
        assert line in dry.output
    result = purge_cli(runner, "--yes")

    assert result.exit_code == 0, result.output
    assert "Deleted 6 events" in result.output
    assert existing(app, gone + kept + held) == sorted(kept + held)
    assert count_rows(app, CHAIN, CHAIN.c.audit_log_id.in_(gone)) == len(gone)  # the links stay: tombstones
    [recorded] = purge_rows(app)
    assert set(recorded["cutoffs"]) == {"requests", "security", "*"}
    assert recorded["count"] == 6 and recorded["head_seq"] == links(app)[-1].seq  # the purge's own event: unsealed
    assert len(recorded["holds"]) == 1
    [metadata] = purge_events(app)
    assert metadata["purge_id"] == recorded["id"] and metadata["count"] == 6
    assert metadata["by_category"] == {"authentication": 1, "data": 2, "requests": 2, "security": 1}
    assert "chain_cut" not in metadata


@pytest.mark.settings(**RETENTION)
def test_verification_passes_after_a_category_purge_and_still_reports_an_event_deleted_by_hand(app, runner):
    """The purged events' tombstones are covered by the purge's record; an event deleted by hand is not, whether it
    is young, inside the hold, kept by its category's longer retention, or sealed after the purge's head."""
    purged = [record(app, "requests", 100), record(app, "data", 200), record(app, "authentication", 400)]
    young, security = record(app, "requests", 10), record(app, "security", 400)
    held = record(app, "data", 300)
    hold(app, 301, 299)
    assert purge_cli(runner, "--yes").exit_code == 0
    replayed = record(app, "data", 500)  # past retention, but sealed after the head the purge read
    assert existing(app, purged + [young, security, held, replayed]) == sorted([young, security, held, replayed])

    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert verify(app).purged == len(purged)

    for victim in (young, security, held, replayed):
        tamper(app, delete(LOGS).where(LOGS.c.id == victim))
    report = verify(app)
    assert not report.ok
    for victim in (young, security, held, replayed):
        assert any(f"Event {victim} (link" in p and "was deleted" in p for p in report.problems), report.problems
    assert not any(f"Event {victim} (link" in p for victim in purged for p in report.problems), report.problems
    assert report.purged == len(purged)


@pytest.mark.settings(**RETENTION)
def test_older_than_days_applies_one_cutoff_to_every_category(app, runner):
    security = record(app, "security", 400)
    requests = record(app, "requests", 60)
    young = record(app, "data", 10)

    result = purge_cli(runner, "--older-than-days", "30", "--yes")

    assert result.exit_code == 0, result.output
    assert existing(app, [security, requests, young]) == [young]
    [recorded] = purge_rows(app)
    assert list(recorded["cutoffs"]) == ["*"]


def test_the_purge_deletes_in_batches_and_keeps_every_link(app, runner, monkeypatch):
    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    # The batches, as on SQLite; PostgreSQL uses them for whatever it cannot drop as whole months
    # (test_partitions.py), so here no month is offered for dropping.
    monkeypatch.setattr(purge_plan, "droppable", lambda *args: [])
    old = record_events(app, 5, days_ago=400, label="old")
    recent = record_events(app, 3, days_ago=10, label="recent")
    first, last = row(app, old[0])["timestamp"], row(app, old[-1])["timestamp"]
    seal(app)
    before = links(app)
    deletes = []
    with app.app_context():
        engine = db.engine

    def count_deletes(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM AUDIT_LOGS"):
            deletes.append(statement)

    event.listen(engine, "before_cursor_execute", count_deletes)
    try:
        result = purge_cli(runner, "--older-than-days", "365", "--yes")
    finally:
        event.remove(engine, "before_cursor_execute", count_deletes)

    assert result.exit_code == 0, result.output
    assert "Deleted 5 events" in result.output
    assert len(deletes) == 3  # 2 + 2 + 1: bounded batches, never one statement over everything
    assert existing(app, old + recent) == recent
    assert links(app)[:len(before)] == before  # not one link removed or changed
    [recorded] = purge_events(app)
    assert recorded["count"] == 5 and recorded["head_seq"] == before[-1].seq
    assert recorded["range"] == {"from": first.isoformat(), "to": last.isoformat()}
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output


def test_events_inside_a_hold_are_never_purged_even_by_older_than_days_zero(app, runner):
    held = record_events(app, 2, days_ago=400, label="held")
    other = record_events(app, 2, days_ago=500, label="other")
    hold(app, 401, 399)

    result = purge_cli(runner, "--older-than-days", "0", "--yes")

    assert result.exit_code == 0, result.output
    assert existing(app, held + other) == held
    assert "2 event(s) past retention are kept by legal holds" in result.output


def test_a_released_hold_no_longer_keeps_its_events(app, runner):
    held = record_events(app, 2, days_ago=400, label="held")
    hold_id = hold(app, 401, 399)
    assert purge_cli(runner, "--older-than-days", "365", "--yes").exit_code == 0
    assert existing(app, held) == held
    released = runner.invoke(args=["audit", "hold", "release", str(hold_id)])
    assert released.exit_code == 0, released.output

    result = purge_cli(runner, "--older-than-days", "365", "--yes")

    assert result.exit_code == 0, result.output
    assert existing(app, held) == []
    assert [r["holds"] for r in purge_rows(app)][-1] == []


def test_events_sealed_after_the_head_the_purge_read_are_not_purged(app, runner):
    """An old event that arrives between the plan (which seals and reads the head) and the deletes (a replay from
    the spool) is not in the chain the purge read: it stays, for the next purge."""
    sealed = record_events(app, 2, days_ago=400, label="sealed")
    with app.app_context():
        plan = purge.plan_purge(365)
        db.session.remove()
    late = record_events(app, 1, days_ago=400, label="replayed")
    seal(app)  # even once sealed, it is past the head the plan read

    with app.app_context():
        deleted = purge.execute_purge(plan)
        db.session.remove()

    assert deleted == 2
    assert existing(app, sealed + late) == late
    assert purge_cli(runner, "--older-than-days", "365", "--yes").exit_code == 0
    assert existing(app, late) == []


def test_unsealed_events_are_sealed_before_they_are_purged(app, runner):
    old = record_events(app, 4, days_ago=400, label="old")
    assert links(app) == []  # nothing sealed yet

    result = purge_cli(runner, "--older-than-days", "365", "--yes")

    assert result.exit_code == 0, result.output
    assert existing(app, old) == []
    assert [link.audit_log_id for link in links(app)][:4] == old  # chained first; the links stay
    [recorded] = purge_events(app)
    assert recorded["count"] == 4 and recorded["head_seq"] == 4


def test_a_hold_placed_while_the_purge_runs_stops_it_before_it_deletes(app):
    old = record_events(app, 3, days_ago=400, label="old")
    with app.app_context():
        plan = purge.plan_purge(365)
        db.session.remove()
    hold(app, 401, 399)

    with app.app_context(), pytest.raises(purge.HoldsChanged, match="legal hold"):
        purge.execute_purge(plan)

    assert existing(app, old) == old
    assert purge_rows(app) == []


def test_a_hold_placed_between_two_batches_stops_the_purge_and_its_record_says_what_went(app, monkeypatch):
    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    monkeypatch.setattr(purge_plan, "droppable", lambda *args: [])
    early = record_events(app, 2, days_ago=500, label="early")
    late = record_events(app, 2, days_ago=400, label="late")
    with app.app_context():
        plan = purge.plan_purge(365)
        db.session.remove()
    batches = []

    def hold_after_first_batch(count):
        batches.append(count)
        if len(batches) == 1:
            hold(app, 401, 399)

    with app.app_context(), pytest.raises(purge.HoldsChanged):
        purge.execute_purge(plan, progress=hold_after_first_batch)

    assert existing(app, early + late) == late
    [recorded] = purge_rows(app)
    assert recorded["count"] == 2 and plan.deleted == 2
    assert verify(app).ok  # what went before the hold is covered by the record


def test_an_old_event_chained_after_a_recent_one_is_purged_too(app, runner):
    """The purge no longer cuts a prefix of the chain: an old event sealed after a young one (a spool replay, a
    clock step) goes with the other old ones, and the young one stays between their tombstones."""
    old = record_events(app, 2, days_ago=400, label="old")
    recent = record_events(app, 1, days_ago=1, label="recent")
    replayed = record_events(app, 2, days_ago=400, label="replayed")

    result = purge_cli(runner, "--older-than-days", "365", "--yes")

    assert result.exit_code == 0 and "Deleted 4 events" in result.output, result.output
    assert existing(app, old + recent + replayed) == recent
    assert len(links(app)) >= 5
    assert verify(app).ok


def test_two_purges_each_record_themselves(app, runner):
    oldest = record_events(app, 3, days_ago=400, label="oldest")
    older = record_events(app, 3, days_ago=200, label="older")
    recent = record_events(app, 3, days_ago=10, label="recent")

    first = purge_cli(runner, "--older-than-days", "300", "--yes")
    assert first.exit_code == 0 and "Deleted 3 events" in first.output, first.output
    second = purge_cli(runner, "--older-than-days", "100", "--yes")
    assert second.exit_code == 0 and "Deleted 3 events" in second.output, second.output

    assert existing(app, oldest + older + recent) == recent
    assert [m["count"] for m in purge_events(app)] == [3, 3]
    assert [r["count"] for r in purge_rows(app)] == [3, 3]
    assert [m["purge_id"] for m in purge_events(app)] == [r["id"] for r in purge_rows(app)]
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output


def test_without_yes_it_asks_and_no_aborts(app, runner):
    old = record_events(app, 4, days_ago=400, label="old")

    refused = purge_cli(runner, "--older-than-days", "365", input="n\n")

    assert refused.exit_code == 1, refused.output
    assert "Delete 4 events from" in refused.output and "Aborted" in refused.output
    assert existing(app, old) == old
    assert purge_events(app) == [] and purge_rows(app) == []

    accepted = purge_cli(runner, "--older-than-days", "365", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert existing(app, old) == []


def test_a_period_below_the_retention_setting_warns(app, runner):
    record_events(app, 2, days_ago=400, label="old")
    assert app.config["AUDIT_RETENTION_DAYS"] == 365

    short = purge_cli(runner, "--older-than-days", "30", "--dry-run")
    long = purge_cli(runner, "--older-than-days", "400", "--dry-run")

    assert "Warning: 30 days is shorter than AUDIT_RETENTION_DAYS (365)" in short.output
    assert short.exit_code == 0
    assert "Warning" not in long.output and long.exit_code == 0


def test_any_period_from_zero_is_accepted_but_not_a_negative_one(app, runner):
    ids = record_events(app, 2)
    zero = purge_cli(runner, "--older-than-days", "0", "--yes")
    assert zero.exit_code == 0, zero.output
    assert existing(app, ids) == []
    negative = purge_cli(runner, "--older-than-days", "-1", "--yes")
    assert negative.exit_code == 2 and "-1" in negative.output


def test_nothing_old_enough_deletes_nothing(app, runner):
    ids = record_events(app, 3, days_ago=10)
    result = purge_cli(runner, "--yes")
    assert result.exit_code == 0 and "Nothing to purge" in result.output, result.output
    assert existing(app, ids) == ids and purge_events(app) == [] and purge_rows(app) == []


def test_the_events_verification_anchors_on_are_never_purged(app, runner):
    """A database purged before tombstones starts its chain at the cut its old RETENTION_PURGE event records, and
    migration 0016's rebuild is a CHAIN_CHECKPOINT that later checkpoints are read against: both stay, however old."""
    def old_event(action, metadata):
        with app.app_context():
            event_id = log_audit(None, action, ResourceType.AUDIT_LOG, None, f"old {action.value}", metadata,
                                 timestamp=utcnow() - timedelta(days=4000), transactional=True)
            db.session.commit()
            assert app.extensions["audit_writer"].flush()
            audit_id = db.session.scalar(select(LOGS.c.id).where(LOGS.c.event_id == event_id))
            db.session.remove()
            return audit_id

    anchors = [old_event(ActionType.RETENTION_PURGE, {"count": 3, "chain_cut": {"seq": 0, "hash": "0" * 64}}),
               old_event(ActionType.CHAIN_CHECKPOINT, {"seq": 1, "hash": "x", "rechained": {"old_problems": 0}})]
    others = [old_event(ActionType.RETENTION_PURGE, {"count": 3, "purge_id": 9}),
              old_event(ActionType.CHAIN_CHECKPOINT, {"seq": 1, "hash": "x"})]

    result = purge_cli(runner, "--older-than-days", "0", "--yes")

    assert result.exit_code == 0, result.output
    assert existing(app, anchors + others) == anchors
