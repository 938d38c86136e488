"""Records that could pass a deletion off as legitimate, forged by someone who can write to the database but holds
no key: a purge record, a legacy chain cut, a second "rebuilt" checkpoint, a flipped line in an export. Each is
named by ``flask audit verify`` (with the public key) or by the offline verifier."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from audit_portal.audit.integrity import canonical
from audit_portal.audit.integrity.models import AuditPurge
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.inserts import insert_events
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ..chain_support import CHAIN, LOGS, links, record_events, seal, tamper
from ..digest_support import KeyPair, run_sealer, verify_with
from .test_offline_verify import check, export, lines

PURGES = AuditPurge.__table__


def insert_event(app, action: ActionType, metadata: dict) -> None:
    """An event inserted as the application would (so it gets sealed), with whatever metadata the forger wants."""
    event = build_event(action, ResourceType.AUDIT_LOG, None, f"forged {action.value}", timestamp=utcnow(),
                        metadata=metadata)
    with app.app_context(), db.engine.begin() as conn:
        insert_events(conn, [event])


def test_a_purge_record_added_by_hand_does_not_excuse_a_deletion(app, runner, signed):
    key, ids = signed
    far = (utcnow() + timedelta(days=3650)).isoformat()
    head = max(link.seq for link in links(app))
    tamper(app, insert(PURGES).values(at=utcnow(), cutoffs={"*": far}, holds=[], head_seq=head, count=1),
           delete(LOGS).where(LOGS.c.id == ids[4]))

    result = verify_with(app, runner, key.public)

    assert result.exit_code == 1
    assert "do not carry the key's mark: added or edited by hand" in result.output
    assert f"Event {ids[4]} (link 5) was deleted." in result.output


def test_a_signed_purge_record_widened_afterwards_is_named(app, runner, tmp_path):
    """A real purge, signed; then its cutoff is moved forward (and its event's too) to cover a deletion."""
    app.config.update(AUDIT_DIGEST_EVERY_EVENTS=6, AUDIT_DIGEST_EVERY_SECONDS=0)
    key = KeyPair(tmp_path / "keys")
    record_events(app, 3, days_ago=400, label="old")
    young = record_events(app, 6, label="young")
    seal(app)
    assert runner.invoke(args=["audit", "purge", "--yes", "--older-than-days", "100"]).exit_code == 0
    assert run_sealer(app, runner, key).exit_code == 0
    assert verify_with(app, runner, key.public).exit_code == 0
    far = (utcnow() + timedelta(days=3650)).isoformat()
    [purge_event] = [r for r in _purge_events(app)]
    metadata = {**purge_event.metadata, "cutoffs": {"*": far}}
    tamper(app, update(PURGES).values(cutoffs={"*": far}),
           update(LOGS).where(LOGS.c.id == purge_event.id).values(metadata=metadata),
           delete(LOGS).where(LOGS.c.id == young[2]))

    result = verify_with(app, runner, key.public)

    assert result.exit_code == 1
    assert "differs from the copy digest" in result.output and "edited after it was signed" in result.output


def _purge_events(app):
    with app.app_context(), db.engine.connect() as conn:
        return list(conn.execute(select(LOGS.c.id, LOGS.c["metadata"].label("metadata"))
                                 .where(LOGS.c.action_type == ActionType.RETENTION_PURGE.value)))


def test_a_legacy_chain_cut_recorded_after_the_rebuild_is_not_accepted(app, runner, signed):
    """Purges before migration 0016 cut a prefix of the chain and recorded the cut; one recorded now is forged, to
    delete a signed prefix."""
    key, ids = signed
    chain = links(app)
    cut = {"seq": 6, "hash": chain[5].link_hash, "public": chain[5].public_hash}
    insert_event(app, ActionType.RETENTION_PURGE, {"count": 6, "chain_cut": cut})
    tamper(app, delete(CHAIN).where(CHAIN.c.seq <= 6), delete(LOGS).where(LOGS.c.id.in_(ids[:6])))

    result = verify_with(app, runner, key.public)

    assert result.exit_code == 1
    assert "The chain starts at link 7 without a retention purge that cut it there" in result.output


def test_a_second_rebuild_checkpoint_is_named_as_forged(app, runner, signed):
    """Migration 0016 records one "rebuilt" checkpoint; a later one would switch the older checkpoints off."""
    key, _ = signed
    insert_event(app, ActionType.CHAIN_CHECKPOINT, {"seq": 1, "hash": "0" * 64, "rechained": {"old_problems": 0}})
    insert_event(app, ActionType.CHAIN_CHECKPOINT, {"seq": 2, "hash": "0" * 64, "rechained": {"old_problems": 0}})

    result = verify_with(app, runner, key.public)

    assert result.exit_code == 1
    assert "records a second rebuild of the chain (at link 2)" in result.output


def test_a_deleted_prefix_fails_the_whole_export_offline(app, runner, tmp_path, signed):
    key, ids = signed
    tamper(app, delete(CHAIN).where(CHAIN.c.seq <= 6), delete(LOGS).where(LOGS.c.id.in_(ids[:6])))
    events, digests = export(runner, tmp_path)

    result = check(events, digests, key.public)

    assert result.returncode == 1
    assert "Links 1 to 6 are missing from the export" in result.stdout


def test_complete_refuses_an_export_that_withholds_events(app, runner, tmp_path, signed):
    """A deletion turned into a "filtered out" line passes a plain check (a filtered export cannot prove a negative),
    which says how many events were withheld; --complete refuses it."""
    key, ids = signed
    tamper(app, delete(LOGS).where(LOGS.c.id == ids[5]))
    events, digests = export(runner, tmp_path)
    items = lines(events)
    for item in items:
        if item.get("purged"):
            item["purged"] = False
    events.write_text("".join(json.dumps(item) + "\n" for item in items))

    plain = check(events, digests, key.public)
    complete = check(events, digests, key.public, complete=True)

    assert plain.returncode == 0 and "NOTE: 1 event(s) in that range are withheld" in plain.stdout
    assert complete.returncode == 1 and "--complete: the export withholds 1 event(s)" in complete.stdout


def test_a_filtered_export_verifies_when_its_purge_was_signed_in_an_earlier_digest(app, runner, tmp_path):
    app.config["AUDIT_DIGEST_EVERY_EVENTS"] = 6
    key = KeyPair(tmp_path / "keys")
    record_events(app, 12, label="early")
    record_events(app, 3, days_ago=400, label="old")
    record_events(app, 3, label="keep")
    seal(app)
    assert runner.invoke(args=["audit", "purge", "--yes", "--older-than-days", "100"]).exit_code == 0
    assert run_sealer(app, runner, key).exit_code == 0  # the first digest (links 1-6) carries the purge
    events, digests = export(runner, tmp_path, "--search", "Changed keep 1")

    result = check(events, digests, key.public)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "(of which 3 purged)" in result.stdout


def test_a_salt_removed_by_hand_does_not_pass_as_an_erasure(app, runner, tmp_path, signed):
    """Moving a field's commitment into the link's ``erased`` and dropping its salt would make the chains check the
    commitment instead of the value, so the value could be rewritten at will. No ERASURE event recorded it."""
    key, ids = signed
    link = next(link for link in links(app) if link.audit_log_id == ids[3])
    with app.app_context(), db.engine.connect() as conn:
        stored = conn.execute(select(LOGS).where(LOGS.c.id == ids[3])).one()
        original = canonical.canonical_dict(stored, link.user_id)
    erased = {name: canonical.commitment(link.salts[name], original[name]) for name in ("description", "ip_address")}
    salts = {name: salt for name, salt in link.salts.items() if name not in erased}
    tamper(app, update(CHAIN).where(CHAIN.c.seq == link.seq).values(salts=salts, erased=erased),
           update(LOGS).where(LOGS.c.id == ids[3]).values(description="Approved by the CEO [erased]",
                                                         ip_address="10.9.9.9"))

    online = verify_with(app, runner, key.public)
    events, digests = export(runner, tmp_path)
    offline = check(events, digests, key.public)

    assert online.exit_code == 1
    assert "erased field(s) do not match what the last ERASURE event recorded" in online.output
    assert f"Event {ids[3]}: its ip_address was erased but holds a value again." in online.output
    assert offline.returncode == 1
    assert f"Event {ids[3]} (link 4): its erased ip_address was changed afterwards." in offline.stdout
