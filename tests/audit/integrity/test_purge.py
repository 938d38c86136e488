"""Retention: `flask audit purge --older-than-days N` deletes old events in bounded batches, records a
RETENTION_PURGE event with the count, the date range and the chain cut, and leaves a chain that verifies."""

from __future__ import annotations

from sqlalchemy import event, select

from audit_portal.audit.integrity import purge
from audit_portal.audit.record.enums import ActionType
from audit_portal.extensions import db

from ..chain_support import CHAIN, LOGS, checkpoint, count_rows, links, record_events, row, seal


def purge_cli(runner, *args, input=None):
    return runner.invoke(args=["audit", "purge", *args], input=input)


def verify_cli(runner):
    return runner.invoke(args=["audit", "verify"])


def purge_events(app) -> list[dict]:
    with app.app_context(), db.engine.connect() as conn:
        return [m for (m,) in conn.execute(select(LOGS.c["metadata"])
                                           .where(LOGS.c.action_type == ActionType.RETENTION_PURGE.value)
                                           .order_by(LOGS.c.id))]


def existing(app, ids) -> list[int]:
    with app.app_context(), db.engine.connect() as conn:
        return list(conn.scalars(select(LOGS.c.id).where(LOGS.c.id.in_(ids)).order_by(LOGS.c.id)))


def test_dry_run_says_what_would_go_and_deletes_nothing(app, runner):
    old = record_events(app, 6, days_ago=400, label="old")
    recent = record_events(app, 3, days_ago=10, label="recent")
    first, last = row(app, old[0])["timestamp"], row(app, old[-1])["timestamp"]

    result = purge_cli(runner, "--older-than-days", "365", "--dry-run")

    assert result.exit_code == 0, result.output
    assert (f"Dry run: would delete 6 events from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC "
            "(older than 365 days)") in result.output
    assert existing(app, old + recent) == old + recent
    assert purge_events(app) == []


def test_purge_deletes_in_batches_and_records_count_range_and_cut(app, runner, monkeypatch):
    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    # The batches, as on SQLite; PostgreSQL uses them for whatever it cannot drop as whole months
    # (test_partitions.py), so here no month is offered for dropping.
    monkeypatch.setattr(purge, "_droppable", lambda *args: [])
    old = record_events(app, 5, days_ago=400, label="old")
    recent = record_events(app, 3, days_ago=10, label="recent")
    first, last = row(app, old[0])["timestamp"], row(app, old[-1])["timestamp"]
    seal(app)
    cut_link = links(app)[4]
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
    assert count_rows(app, CHAIN, CHAIN.c.seq <= 5) == 0
    [recorded] = purge_events(app)
    assert recorded["count"] == 5
    assert recorded["range"] == {"from": first.isoformat(), "to": last.isoformat()}
    assert recorded["chain_cut"] == {"seq": 5, "hash": cut_link.link_hash, "public": cut_link.public_hash}
    verified = verify_cli(runner)
    assert verified.exit_code == 0, verified.output


def test_verify_passes_after_two_purges_and_after_purging_everything(app, runner):
    oldest = record_events(app, 3, days_ago=400, label="oldest")
    older = record_events(app, 3, days_ago=200, label="older")
    recent = record_events(app, 3, days_ago=10, label="recent")
    seal(app)
    checkpoint(app)  # a checkpoint of a head that the purges will remove

    first = purge_cli(runner, "--older-than-days", "300", "--yes")
    assert first.exit_code == 0 and "Deleted 3 events" in first.output, first.output
    assert verify_cli(runner).exit_code == 0

    second = purge_cli(runner, "--older-than-days", "100", "--yes")
    assert second.exit_code == 0 and "Deleted 3 events" in second.output, second.output
    after_two = verify_cli(runner)
    assert after_two.exit_code == 0, after_two.output
    assert existing(app, oldest + older + recent) == recent
    assert [m["count"] for m in purge_events(app)] == [3, 3]

    # N=0 is the operator's call: everything sealed so far goes, and the chain goes on from the cut.
    everything = purge_cli(runner, "--older-than-days", "0", "--yes")
    assert everything.exit_code == 0, everything.output
    assert existing(app, recent) == []
    cut = purge_events(app)[-1]["chain_cut"]
    more = record_events(app, 2, label="later")
    after_all = verify_cli(runner)
    assert after_all.exit_code == 0, after_all.output
    assert links(app)[0].seq == cut["seq"] + 1 and links(app)[0].prev_hash == cut["hash"]
    assert existing(app, more) == more


def test_without_yes_it_asks_and_no_aborts(app, runner):
    old = record_events(app, 4, days_ago=400, label="old")

    refused = purge_cli(runner, "--older-than-days", "365", input="n\n")

    assert refused.exit_code == 1, refused.output
    assert "Delete 4 events from" in refused.output and "Aborted" in refused.output
    assert existing(app, old) == old
    assert purge_events(app) == []

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


def test_unsealed_events_are_sealed_before_they_are_purged(app, runner):
    old = record_events(app, 4, days_ago=400, label="old")
    assert links(app) == []  # nothing sealed yet

    result = purge_cli(runner, "--older-than-days", "365", "--yes")

    assert result.exit_code == 0, result.output
    assert existing(app, old) == []
    [recorded] = purge_events(app)
    assert recorded["count"] == 4 and recorded["chain_cut"]["seq"] == 4  # chained first, then cut
    verified = verify_cli(runner)
    assert verified.exit_code == 0, verified.output


def test_nothing_old_enough_deletes_nothing(app, runner):
    ids = record_events(app, 3, days_ago=10)
    result = purge_cli(runner, "--older-than-days", "365", "--yes")
    assert result.exit_code == 0 and "Nothing to purge" in result.output
    assert existing(app, ids) == ids and purge_events(app) == []


def test_the_purge_cuts_the_chain_before_the_first_recent_event(app, runner):
    """Only a prefix of the chain goes: an old event chained after a recent one (a spool replay, a clock
    step) waits for the next purge instead of punching a hole in the chain."""
    old = record_events(app, 2, days_ago=400, label="old")
    recent = record_events(app, 1, days_ago=1, label="recent")
    replayed = record_events(app, 2, days_ago=400, label="replayed")

    result = purge_cli(runner, "--older-than-days", "365", "--yes")

    assert result.exit_code == 0 and "Deleted 2 events" in result.output, result.output
    assert existing(app, old + recent + replayed) == recent + replayed
    assert verify_cli(runner).exit_code == 0
