"""Verifying the hash chains: every link recomputed (the keyed chain and the public one), gaps, reordering,
deleted or unsealed events, tombstones (a purged event's link: accepted only when a recorded purge covers it),
erased fields (their commitments stand in), the chain's start (genesis or a legacy purge cut) and its end (the
checkpoints)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import func, select

from ...extensions import db
from ..record.actors import NoDirectory, directory
from ..record.enums import ActionType, ResourceType, Status
from ..record.models import AuditChainLink, AuditLog
from ..write.service import log_audit
from . import canonical as form
from . import erasure_scope
from .canonical import GENESIS
from .checkpoints import read_checkpoints
from .seal import latest_purge_cut, purge_cuts
from .tombstones import purge_covering, recorded_purges

_table = AuditLog.__table__
_chain = AuditChainLink.__table__


#: How many problems a verification keeps (and the UI shows); the count covers them all.
MAX_PROBLEMS = 100


@dataclass
class VerifyResult:
    checked: int = 0
    late: int = 0
    #: Links whose event a retention purge removed, and events with fields an erasure removed.
    purged: int = 0
    erased: int = 0
    head_seq: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    #: Ids of the events that were chained late (the first 20), so that an auditor can look at them.
    late_events: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problem_count

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "late": self.late, "late_events": self.late_events,
                "purged": self.purged, "erased": self.erased,
                "head_seq": self.head_seq, "problems": self.problems[:20], "problem_count": self.problem_count}


def _anchor(first_seq: int, first_prev: str) -> tuple[str, str] | None:
    """Where the chains may start (keyed, public): genesis, or the cut a legacy retention purge recorded (one from
    before migration 0016, which rebuilt the public chain from genesis at the first link left, records no public
    hash)."""
    if first_seq == 1:
        return GENESIS, GENESIS
    with db.engine.connect() as conn:
        cuts = purge_cuts(conn)
    for cut in cuts:
        if cut["seq"] == first_seq - 1 and cut["hash"] == first_prev:
            return first_prev, cut.get("public") or GENESIS
    return None


def verify(progress=None, batch: int = 5000) -> VerifyResult:
    """Walk the chain and report the first problems: changed, deleted, reordered or unsealed events,
    a chain that does not start where it should, and a tail shorter than the last checkpoint."""
    result = VerifyResult()
    walk = _Walk(result)
    while True:
        query = (select(_chain, _table).outerjoin(_table, _table.c.id == _chain.c.audit_log_id)
                 .where(_chain.c.seq > walk.last_seq).order_by(_chain.c.seq).limit(batch))
        rows = db.session.execute(query).all()
        if not rows:
            break
        for row in rows:
            walk.step(row._mapping)
        if progress:
            progress(len(rows))
    result.head_seq = walk.last_seq
    erasure_scope.check(result.problem)
    _check_checkpoints(result)
    _check_unsealed(result)
    return result


class _Walk:
    """Where a verification stands: the position and hash the next link must continue from."""

    def __init__(self, result: VerifyResult):
        self.result = result
        self.previous_event = None
        self.deleted_users = _deleted_user_check()
        self.key = current_app.config["AUDIT_HMAC_KEY"].encode()
        with db.engine.connect() as conn:
            self.purges, forged = recorded_purges(conn, self.key)
        if forged:
            result.problem(f"Retention purge record(s) {', '.join(map(str, forged[:10]))} do not carry the key's "
                           "mark: added or edited by hand (the events they cover count as deleted).")
        self.expected_public = GENESIS
        first = db.session.execute(select(_chain.c.seq, _chain.c.prev_hash).order_by(_chain.c.seq).limit(1)).first()
        if first is None:
            # Empty: nothing sealed yet, or a retention purge removed every link (the chain goes on from its cut).
            with db.engine.connect() as conn:
                cut = latest_purge_cut(conn)
            self.expected_seq = self.expected_prev = None
            self.last_seq = cut["seq"] if cut else 0
            return
        anchor = _anchor(first.seq, first.prev_hash)
        if anchor is None:
            result.problem(f"The chain starts at link {first.seq} without a retention purge that cut it "
                           "there: earlier events were deleted.")
            anchor = first.prev_hash, None  # (the public hash before it is gone with it: not checked)
        self.expected_prev, self.expected_public = anchor
        self.expected_seq = first.seq
        self.last_seq = first.seq - 1

    def step(self, m) -> None:
        """Check one link (``m``: a row of the chain joined with its event) and move on past it."""
        result = self.result
        link_seq, link_prev, link_digest = m[_chain.c.seq], m[_chain.c.prev_hash], m[_chain.c.link_hash]
        audit_id = m[_chain.c.audit_log_id]
        if link_seq != self.expected_seq:
            span = f"Link {self.expected_seq} is" if link_seq - self.expected_seq == 1 else \
                f"Links {self.expected_seq} to {link_seq - 1} are"
            result.problem(f"{span} missing from the chain (after event {self.previous_event}, before event "
                           f"{audit_id}): events were deleted.")
        elif link_prev != self.expected_prev:
            result.problem(f"Link {link_seq} (event {audit_id}) does not follow link {link_seq - 1}: the chain "
                           "was reordered or rewritten.")
        material = form.material(link_seq, m[_chain.c.event_timestamp], m[_chain.c.category], m[_chain.c.row_hash])
        link_changed = not hmac.compare_digest(form.hmac_link(self.key, link_prev, material), link_digest)
        public = m[_chain.c.public_hash]
        if not link_changed and self.expected_public is not None and \
                public != form.public_link(self.expected_public, material):
            result.problem(f"Link {link_seq} (event {audit_id}): its public hash does not follow the public chain: "
                           "the public chain was rewritten.")
        if m[_table.c.id] is None:
            if link_changed:
                result.problem(f"Link {link_seq} (the tombstone of event {audit_id}) was changed after it was sealed.")
            elif purge_covering(self.purges, link_seq, m[_chain.c.event_timestamp], m[_chain.c.category]) is None:
                result.problem(f"Event {audit_id} (link {link_seq}) was deleted.")
            else:
                result.purged += 1
        elif link_changed or self._event_changed(m, audit_id, link_seq):
            result.problem(f"Event {audit_id} (link {link_seq}) was changed after it was recorded.")
        if m[_chain.c.late]:
            result.late += 1
            if len(result.late_events) < 20:
                result.late_events.append(audit_id)
        self.expected_prev, self.expected_seq = link_digest, link_seq + 1
        self.expected_public = public or ""
        self.previous_event = audit_id
        result.checked += 1
        self.last_seq = link_seq

    def _event_changed(self, m, audit_id, link_seq) -> bool:
        """Whether the event no longer hashes to its link's row hash (its public form: from the salts, and the
        commitments an erasure kept); reports a changed user by itself."""
        stored_user, sealed_user = m[_table.c.user_id], m[_chain.c.user_id]
        if stored_user != sealed_user and not (stored_user is None and self.deleted_users(sealed_user)):
            self.result.problem(f"Event {audit_id} (link {link_seq}): its user was changed.")
        erased = m[_chain.c.erased]
        if erased:
            self.result.erased += 1
        try:
            digest = form.row_hash(form.public_form(form.canonical_dict(form.JoinedRow(m), sealed_user),
                                                    m[_chain.c.salts], erased))
        except (KeyError, TypeError, ValueError):  # a salt removed or mangled without an erasure
            return True
        return not hmac.compare_digest(digest, m[_chain.c.row_hash] or "") \
            or m[_chain.c.category] != m[_table.c.category] \
            or form.iso(m[_chain.c.event_timestamp]) != form.iso(m[_table.c.timestamp])


def _deleted_user_check():
    """A test of "this user no longer exists", asking the app's directory once per user id. Without a directory
    nobody counts as deleted: an event whose user was cleared is then reported as changed (a false alarm is
    better than a tampered event passing)."""
    users = directory()
    if isinstance(users, NoDirectory):
        return lambda user_id: False
    known: dict[int, bool] = {}

    def deleted(user_id) -> bool:
        if user_id is None:
            return False
        if user_id not in known:
            known[user_id] = user_id not in users.names([user_id])
        return known[user_id]

    return deleted


def _recorded_checkpoints() -> list[tuple[str, dict]]:
    """Checkpoints from the file (outside the database) and from CHAIN_CHECKPOINT events (in it)."""
    points = [("checkpoint file", p) for p in read_checkpoints() if isinstance(p, dict)]
    events = db.session.execute(select(_table.c.id, _table.c["metadata"], _table.c.timestamp)
                                .where(_table.c.action_type == ActionType.CHAIN_CHECKPOINT.value)
                                .order_by(_table.c.id)).all()
    for event_id, metadata, at in events:
        if isinstance(metadata, dict) and isinstance(metadata.get("seq"), int):
            points.append((f"checkpoint event {event_id}", {"seq": metadata["seq"], "hash": metadata.get("hash"),
                                                           "at": at.isoformat() if at else "?",
                                                           "rechained": metadata.get("rechained")}))
    return points


def _check_checkpoints(result: VerifyResult) -> None:
    """Compare the chain with its recorded heads. Migration 0016 rebuilt the chain in its new form and recorded
    that as a checkpoint (``rechained``: the old head, and how many old links did not verify then): checkpoints of
    the old form at or below it no longer apply."""
    points = _recorded_checkpoints()
    rebuilt = _first_rebuild(points, result)
    rebuilt_seq = rebuilt["seq"] if rebuilt else 0
    broken = int(rebuilt["rechained"].get("old_problems") or 0) if rebuilt else 0
    if broken:
        result.problem(f"When the chain was rebuilt in its new form (migration 0016, at link {rebuilt_seq}), "
                       f"{broken} link(s) of the old chain did not verify: events were changed or deleted before.")
    truncated = rewritten = False
    for source, point in points:
        seq = point.get("seq")
        if not isinstance(seq, int) or (seq <= rebuilt_seq and point is not rebuilt):
            continue
        if seq > result.head_seq:
            if not truncated:
                result.problem(f"The chain ends at link {result.head_seq}, but the {source} recorded link {seq} "
                               f"at {point.get('at')}: events at the end were deleted.")
            truncated = True
            continue
        stored = db.session.scalar(select(_chain.c.link_hash).where(_chain.c.seq == seq))
        if stored is not None and stored != point.get("hash"):
            if not rewritten:
                result.problem(f"Link {seq} differs from the {source} of {point.get('at')}: the chain was "
                               "recomputed.")
            rewritten = True


def _first_rebuild(points: list[tuple[str, dict]], result: VerifyResult) -> dict | None:
    """Migration 0016's checkpoint: the first one the file and the events recorded (the file's lines come first, in
    their order, then the events by id). A second one can only be forged (to switch the older checkpoints off)."""
    rebuilds = {}
    for source, point in points:
        if not isinstance(point.get("rechained"), dict):
            continue
        kind = "file" if source == "checkpoint file" else "event"
        if kind in rebuilds:
            result.problem(f"The {source} records a second rebuild of the chain (at link {point.get('seq')}): only "
                           "migration 0016 rebuilds it, once; this one was forged.")
            continue
        rebuilds[kind] = point
    return rebuilds.get("file") or rebuilds.get("event")


def _check_unsealed(result: VerifyResult) -> None:
    top = db.session.scalar(select(func.max(_chain.c.audit_log_id))) or 0
    unsealed = (select(_table.c.id).select_from(_table.outerjoin(_chain, _chain.c.audit_log_id == _table.c.id))
                .where(_chain.c.seq.is_(None), _table.c.id < top))
    count = db.session.scalar(select(func.count()).select_from(unsealed.subquery()))
    if count:
        ids = list(db.session.scalars(unsealed.order_by(_table.c.id).limit(10)))
        more = f" and {count - len(ids)} more" if count > len(ids) else ""
        result.problem(f"{count} event(s) below the chain's head are not in the chain (events "
                       f"{', '.join(map(str, ids))}{more}): they were inserted outside the application.")


def record_verification(result: VerifyResult, actor=None) -> None:
    """Store the outcome as an AUDIT_VERIFY event (the UI shows the latest)."""
    log_audit(actor.id if actor else None, ActionType.AUDIT_VERIFY, ResourceType.AUDIT_LOG, None,
              f"Audit chain verified: {'intact' if result.ok else 'PROBLEMS FOUND'} ({result.checked:,} events)",
              result.as_dict(), status=Status.SUCCESS if result.ok else Status.FAILURE,
              username=actor.username if actor else None, transactional=True, via_outbox=False)
    db.session.commit()
