"""Tamper evidence: `flask audit verify` passes an intact chain and names what an attacker with database
superuser rights changed: an edited, deleted or reordered event, a truncated tail, a chain recomputed
without the key, a row slipped in below the head. Sealing is safe with several writer processes."""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, update

from audit_portal.audit.integrity import canonical, checkpoints
from audit_portal.audit.integrity import seal as chain_seal
from audit_portal.audit.record.actors import EXTENSION_KEY, NoDirectory
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.service import log_audit
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from audit_portal.users import services as user_services
from audit_portal.users.models import User

from ..chain_support import (
    CHAIN,
    LOGS,
    bump_id_sequence,
    checkpoint,
    count_rows,
    insert_event,
    links,
    recompute_chain,
    record_events,
    row,
    seal,
    tamper,
    verify,
)

ON_POSTGRES = bool(os.environ.get("TEST_DATABASE_URL"))
ATTACKER_KEY = "a-key-the-attacker-made-up-0000000000000"


def verify_cli(runner):
    return runner.invoke(args=["audit", "verify"])


def last_verification(app):
    with app.app_context(), db.engine.connect() as conn:
        return conn.execute(select(LOGS.c.status, LOGS.c["metadata"])
                            .where(LOGS.c.action_type == ActionType.AUDIT_VERIFY.value)
                            .order_by(LOGS.c.id.desc()).limit(1)).one()


def failure_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("  - ")]


# -- an intact chain ----------------------------------------------------------------------------


def test_verify_passes_an_intact_chain_and_records_the_result(app, runner, audit_rows):
    record_events(app, 5)
    with app.app_context():
        log_audit(None, ActionType.REQUEST, ResourceType.REQUEST, None, "POST /x", http_method="POST", path="/x")
    audit_rows()  # the background writer's event is in the table

    result = verify_cli(runner)

    assert result.exit_code == 0, result.output
    assert "OK: the audit chain is intact" in result.output
    assert "Sealed 6 new events" in result.output
    status, metadata = last_verification(app)
    assert status == "SUCCESS" and metadata["ok"] is True and metadata["checked"] == 6
    # The verification's own event is sealed by the next run, which stays intact.
    again = verify_cli(runner)
    assert again.exit_code == 0, again.output
    assert last_verification(app).metadata["checked"] == 7
    assert [link.seq for link in links(app)] == list(range(1, 8))


def test_sealing_never_updates_an_audit_row(app):
    ids = record_events(app, 3)
    before = [row(app, i) for i in ids]
    seal(app)
    assert [row(app, i) for i in ids] == before
    assert [link.audit_log_id for link in links(app)] == ids


def test_every_reading_of_a_row_has_the_same_canonical_form(app):
    """The sealer hashes rows of ``select(audit_logs)`` (read by position), ``verify`` rows joined with their
    links (read by column name): both must give the same bytes, as must a row whose columns come in another
    order."""
    ids = record_events(app, 3)
    seal(app)
    with app.app_context():
        plain = db.session.execute(select(LOGS).where(LOGS.c.id.in_(ids)).order_by(LOGS.c.id)).all()
        joined = db.session.execute(select(CHAIN, LOGS).join(LOGS, LOGS.c.id == CHAIN.c.audit_log_id)
                                    .where(LOGS.c.id.in_(ids)).order_by(LOGS.c.id)).all()
        reordered = db.session.execute(select(*reversed(LOGS.c)).where(LOGS.c.id.in_(ids)).order_by(LOGS.c.id)).all()
        for by_position, by_column, other_order in zip(plain, joined, reordered, strict=True):
            form = canonical.canonical_dict(by_position, 7)
            by_name = canonical.canonical_dict(canonical.JoinedRow(by_column._mapping), 7)
            assert form == by_name == canonical.canonical_dict(other_order, 7)
            decoded = json.loads(canonical.encode(form))
            assert decoded["id"] == by_position.id and decoded["user_id"] == 7
            assert decoded["timestamp"] == by_position.timestamp.astimezone(UTC).isoformat(timespec="microseconds")


# -- edited, deleted, reordered ---------------------------------------------------------------


EDITS = {
    "description": lambda r: {"description": "Nothing happened here"},
    "timestamp": lambda r: {"timestamp": r["timestamp"] - timedelta(hours=1)},
    "metadata": lambda r: {"metadata": {"old": 2, "new": 2}},
    "status": lambda r: {"status": "FAILURE"},
}


@pytest.mark.parametrize("column", EDITS)
def test_an_edited_event_is_named(app, runner, column):
    ids = record_events(app, 5)
    seal(app)
    target = ids[2]
    tamper(app, update(LOGS).where(LOGS.c.id == target).values(**EDITS[column](row(app, target))))

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert f"Event {target} (link 3) was changed after it was recorded." in result.output
    assert len(failure_lines(result)) == 1, result.output  # the neighbours are not blamed
    status, metadata = last_verification(app)
    assert status == "FAILURE" and metadata["ok"] is False
    assert any(f"Event {target}" in p for p in metadata["problems"])


def test_a_deleted_event_is_named(app, runner):
    ids = record_events(app, 5)
    seal(app)
    tamper(app, delete(LOGS).where(LOGS.c.id == ids[1]))

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert f"Event {ids[1]} (link 2) was deleted." in result.output


def test_an_event_deleted_with_its_link_is_detected_between_its_neighbours(app, runner):
    ids = record_events(app, 5)
    seal(app)
    tamper(app, delete(LOGS).where(LOGS.c.id == ids[2]), delete(CHAIN).where(CHAIN.c.audit_log_id == ids[2]))

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert (f"Link 3 is missing from the chain (after event {ids[1]}, before event {ids[3]}): events were deleted."
            in result.output)


def test_two_swapped_events_are_both_named(app, runner):
    ids = record_events(app, 5)
    seal(app)
    a, b = row(app, ids[1]), row(app, ids[3])
    content = [c.name for c in LOGS.columns if c.name not in ("id", "event_id")]
    tamper(app,
           update(LOGS).where(LOGS.c.id == a["id"]).values({LOGS.c[c]: b[c] for c in content}),
           update(LOGS).where(LOGS.c.id == b["id"]).values({LOGS.c[c]: a[c] for c in content}))
    assert row(app, ids[1])["timestamp"] > row(app, ids[3])["timestamp"]  # really out of order now

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert f"Event {ids[1]} (link 2) was changed" in result.output
    assert f"Event {ids[3]} (link 4) was changed" in result.output


def test_swapped_links_are_detected(app, runner):
    ids = record_events(app, 5)
    seal(app)
    tamper(app,
           update(CHAIN).where(CHAIN.c.seq == 3).values(seq=-3),
           update(CHAIN).where(CHAIN.c.seq == 4).values(seq=3),
           update(CHAIN).where(CHAIN.c.seq == -3).values(seq=4))

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert f"Link 3 (event {ids[3]}) does not follow link 2: the chain was reordered or rewritten." in result.output


def test_deleting_the_start_of_the_chain_is_detected(app, runner):
    ids = record_events(app, 4)
    seal(app)
    tamper(app, delete(LOGS).where(LOGS.c.id.in_(ids[:2])), delete(CHAIN).where(CHAIN.c.seq <= 2))

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert "The chain starts at link 3 without a retention purge that cut it there" in result.output


# -- truncation and recomputation: the checkpoints ---------------------------------------------


@pytest.mark.parametrize("survivor", ["checkpoint file", "checkpoint event"])
def test_a_truncated_tail_is_detected_by_a_checkpoint(app, runner, survivor):
    ids = record_events(app, 8)
    seal(app)
    point = checkpoint(app)
    assert point["seq"] == 8
    checkpoint_event = count_rows(app, LOGS, LOGS.c.action_type == ActionType.CHAIN_CHECKPOINT.value)
    assert checkpoint_event == 1
    # The attacker deletes the last three events and their links, and one of the two checkpoint records.
    statements = [delete(LOGS).where(LOGS.c.id.in_(ids[5:])), delete(CHAIN).where(CHAIN.c.seq > 5)]
    if survivor == "checkpoint file":
        statements.append(delete(LOGS).where(LOGS.c.action_type == ActionType.CHAIN_CHECKPOINT.value))
    else:
        (Path(app.config["AUDIT_DATA_DIR"]) / checkpoints.CHECKPOINT_FILE).unlink()
    tamper(app, *statements)

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert f"the {survivor}" in result.output and "recorded link 8" in result.output
    assert "events at the end were deleted" in result.output


def test_a_chain_recomputed_without_the_key_fails_with_the_real_key(app, runner):
    ids = record_events(app, 4)
    seal(app)
    recompute_chain(app, ATTACKER_KEY,
                    rewrite=[update(LOGS).where(LOGS.c.id == ids[2]).values(description="Nothing to see")])

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert f"Event {ids[0]} (link 1) was changed after it was recorded." in result.output


def test_a_recomputed_chain_is_caught_by_the_checkpoint_file(app, runner):
    """Even if the verifier ran with the attacker's key (say the key was swapped in the environment), the
    checkpoint file outside the database still holds the real hash of an earlier head."""
    ids = record_events(app, 4)
    seal(app)
    checkpoint(app)
    record_events(app, 2)
    seal(app)
    # The attacker edits an event, rewrites the checkpoint event's hash to match, and recomputes every link.
    recompute_chain(app, ATTACKER_KEY, rewrite=[update(LOGS).where(LOGS.c.id == ids[1]).values(description="x")])
    new_hash = next(link.link_hash for link in links(app) if link.seq == 4)
    tamper(app, update(LOGS).where(LOGS.c.action_type == ActionType.CHAIN_CHECKPOINT.value)
           .values(metadata={"seq": 4, "hash": new_hash}))
    recompute_chain(app, ATTACKER_KEY)
    app.config["AUDIT_HMAC_KEY"] = ATTACKER_KEY

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert "Link 4 differs from the checkpoint file" in result.output and "the chain was recomputed" in result.output
    assert len(failure_lines(result)) == 1, result.output  # every link checks out with that key: only the file


# -- rows that arrive below the head -----------------------------------------------------------


def _chain_with_head_at_1000(app) -> list[int]:
    """Three events, then one with id 1000 (ids are not dense: sequences skip), all sealed."""
    ids = record_events(app, 3)
    insert_event(app, id=1000, description="A newer event")
    bump_id_sequence(app, 1000)
    seal(app)
    return ids


def test_an_event_that_commits_late_is_sealed_as_late_and_reported(app, runner):
    _chain_with_head_at_1000(app)
    insert_event(app, id=990, description="A slow transaction's event")  # committed after 1000 was sealed

    unsealed = verify(app)  # before the sealer has seen it, it is not in the chain
    assert not unsealed.ok and "(events 990)" in unsealed.problems[0]

    sealed = seal(app)
    assert (sealed.sealed, sealed.late) == (1, 1)
    assert links(app)[-1].audit_log_id == 990 and links(app)[-1].late

    checked = verify(app)
    assert checked.ok, checked.problems
    assert (checked.late, checked.late_events) == (1, [990])
    result = verify_cli(runner)
    assert result.exit_code == 0, result.output
    assert "1 event(s) committed late" in result.output and "events 990" in result.output
    assert last_verification(app).metadata["late"] == 1


@pytest.mark.skipif(not ON_POSTGRES, reason="a transaction that commits after newer ones needs PostgreSQL")
def test_a_slow_transaction_on_postgresql_is_sealed_late(app):
    with app.app_context(), db.engine.connect() as slow:
        transaction = slow.begin()
        slow_id = slow.execute(insert(LOGS).values(**build_event(
            ActionType.UPDATE, ResourceType.SETTING, "slow", "Slow change", timestamp=utcnow()))
                               .returning(LOGS.c.id)).scalar_one()
        newer = record_events(app, 3)
        assert min(newer) > slow_id
        assert seal(app).sealed == 3
        transaction.commit()
    sealed = seal(app)
    assert (sealed.sealed, sealed.late) == (1, 1)
    result = verify(app)
    assert result.ok, result.problems
    assert result.late_events == [slow_id]


def test_a_row_inserted_below_the_head_outside_the_app_is_reported(app, runner, monkeypatch):
    monkeypatch.setattr(chain_seal, "LATE_WINDOW", 100)
    _chain_with_head_at_1000(app)
    insert_event(app, id=500, description="Forged: the admin approved this")

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert "1 event(s) below the chain's head are not in the chain (events 500)" in result.output
    assert "inserted outside the application" in result.output
    assert count_rows(app, CHAIN, CHAIN.c.audit_log_id == 500) == 0  # never quietly chained


# -- users -------------------------------------------------------------------------------------


def test_deleting_a_user_does_not_break_verification(app, runner, make_user, admin_id):
    bob = make_user("bob")
    sealed_ids = record_events(app, 3, user_id=bob)
    seal(app)
    unsealed_ids = record_events(app, 2, user_id=bob)
    with app.app_context():
        user_services.delete_user(db.session.get(User, admin_id), db.session.get(User, bob))
        db.session.commit()
    for audit_id in sealed_ids + unsealed_ids:
        stored = row(app, audit_id)
        assert (stored["user_id"], stored["username"]) == (None, "bob")  # ON DELETE SET NULL; the name stays

    result = verify_cli(runner)

    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_a_user_reference_removed_by_hand_is_detected(app, runner, make_user):
    alice = make_user("alice")
    ids = record_events(app, 2, user_id=alice)
    seal(app)
    tamper(app, update(LOGS).where(LOGS.c.id == ids[0]).values(user_id=None))  # alice still exists

    result = verify_cli(runner)

    assert result.exit_code == 1, result.output
    assert f"Event {ids[0]} (link 2): its user was changed." in result.output  # link 1: alice's creation


def test_without_a_user_directory_a_removed_user_reference_is_still_detected(app, make_user):
    """The audit package asks the app's directory whether a user was deleted. An app that lent none must not
    make every cleared user reference pass as a deletion: verification then fails closed."""
    alice = make_user("alice")
    ids = record_events(app, 2, user_id=alice)
    seal(app)
    tamper(app, update(LOGS).where(LOGS.c.id == ids[0]).values(user_id=None))
    app.extensions[EXTENSION_KEY] = NoDirectory()

    result = verify(app)

    assert not result.ok
    assert f"Event {ids[0]} (link 2): its user was changed." in result.problems


# -- several processes -------------------------------------------------------------------------


def _writer_process(database_url: str, data_dir: str, name: str, rounds: int, per_round: int, barrier, results):
    """One worker process (forked, as gunicorn forks its workers): its own app and engine on the shared
    database; writes events both ways and seals after every round."""
    from audit_portal import create_app

    worker_app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                             "AUDIT_DATA_DIR": data_dir, "SECRET_KEY": "x" * 40})
    sealed = late = 0
    try:
        barrier.wait(timeout=60)  # everyone starts writing and sealing at once
        with worker_app.app_context():
            for r in range(rounds):
                for i in range(per_round):
                    description = f"worker {name} event {r}.{i}"
                    if i % 2:  # a request event: the background writer inserts it
                        log_audit(None, ActionType.REQUEST, ResourceType.REQUEST, name, description)
                    else:  # a domain event: committed with its change
                        log_audit(None, ActionType.UPDATE, ResourceType.SETTING, name, description,
                                  transactional=True)
                        db.session.commit()
                result = chain_seal.seal()
                sealed, late = sealed + result.sealed, late + result.late
            worker_app.extensions["audit_writer"].close()
            result = chain_seal.seal()
            results.put((name, sealed + result.sealed, late + result.late, None))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put((name, 0, 0, repr(exc)))
        raise


def test_concurrent_writers_and_sealers_produce_one_intact_chain(app):
    workers, rounds, per_round = 4, 6, 10
    with app.app_context():
        db.engine.dispose()  # no connection of ours crosses the fork
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(workers), context.Queue()
    procs = [context.Process(target=_writer_process,
                             args=(app.config["SQLALCHEMY_DATABASE_URI"], app.config["AUDIT_DATA_DIR"], f"w{n}",
                                   rounds, per_round, barrier, results))
             for n in range(workers)]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [error for *_, error in reports if error] == []
    assert all(p.exitcode == 0 for p in procs)
    sealed_by_workers = sum(sealed for _, sealed, _, _ in reports)

    final = seal(app)
    result = verify(app)

    assert result.ok, result.problems
    with app.app_context(), db.engine.connect() as conn:
        total_rows = conn.scalar(select(func.count()).select_from(LOGS))
        seqs = list(conn.scalars(select(CHAIN.c.seq).order_by(CHAIN.c.seq)))
        chained_ids = list(conn.scalars(select(CHAIN.c.audit_log_id)))
        unchained = conn.scalar(select(func.count()).select_from(
            LOGS.outerjoin(CHAIN, CHAIN.c.audit_log_id == LOGS.c.id)).where(CHAIN.c.seq.is_(None)))
        per_worker = dict(conn.execute(select(LOGS.c.resource_id, func.count())
                                       .where(LOGS.c.description.like("worker %"))
                                       .group_by(LOGS.c.resource_id)).all())
    assert per_worker == {f"w{n}": rounds * per_round for n in range(workers)}  # no event lost
    assert seqs == list(range(1, len(seqs) + 1))  # no fork, no gap
    assert len(chained_ids) == len(set(chained_ids)) == total_rows  # each event exactly once
    assert unchained == 0
    assert sealed_by_workers + final.sealed == total_rows  # the sealers shared the work without overlap


def test_the_newest_checkpoint_is_the_last_whole_one_even_past_a_damaged_tail(app):
    """``last_checkpoint`` reads the file from its end (every seal pass asks; the file only grows): it gives what
    reading the whole file gives, also when the last valid line is further back than one read."""
    with app.app_context():
        path = checkpoints._checkpoint_path()
        assert checkpoints.last_checkpoint() is None  # no file yet
        path.parent.mkdir(parents=True, exist_ok=True)
        points = [{"seq": 1000 * i, "hash": f"{i:064x}", "at": "2026-11-27T00:00:00+00:00"} for i in range(1, 3001)]
        path.write_text("".join(json.dumps(p) + "\n" for p in points), encoding="utf-8")
        assert checkpoints.last_checkpoint() == checkpoints.read_checkpoints()[-1] == points[-1]

        with open(path, "a", encoding="utf-8") as fh:  # a torn write, then junk longer than the first block read
            fh.write('{"seq": 3001000, "hash": "ab')
            fh.write("\n" + "x" * 5000 + "\n[1, 2]\n")
        assert checkpoints.last_checkpoint() == points[-1]
