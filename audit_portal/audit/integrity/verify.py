"""Verifying the hash chain: every link recomputed, gaps, reordering, deleted or unsealed events, the chain's
start (genesis or a recorded purge cut) and its end (the checkpoints)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from sqlalchemy import func, select

from ...extensions import db
from ..record.actors import NoDirectory, directory
from ..record.enums import ActionType, ResourceType, Status
from ..record.models import AuditChainLink, AuditLog
from ..write.service import log_audit
from .checkpoints import read_checkpoints
from .seal import GENESIS, latest_purge_cut, link_hash, purge_cuts

_table = AuditLog.__table__
_chain = AuditChainLink.__table__


#: How many problems a verification keeps (and the UI shows); the count covers them all.
MAX_PROBLEMS = 100


@dataclass
class VerifyResult:
    checked: int = 0
    late: int = 0
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
                "head_seq": self.head_seq, "problems": self.problems[:20], "problem_count": self.problem_count}


def _anchor(first_seq: int, first_prev: str) -> str | None:
    """Where the chain may start: genesis, or the cut a retention purge recorded."""
    if first_seq == 1:
        return GENESIS
    with db.engine.connect() as conn:
        cuts = purge_cuts(conn)
    for cut in cuts:
        if cut["seq"] == first_seq - 1 and cut["hash"] == first_prev:
            return first_prev
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
    _check_checkpoints(result)
    _check_unsealed(result)
    return result


class _Walk:
    """Where a verification stands: the position and hash the next link must continue from."""

    def __init__(self, result: VerifyResult):
        self.result = result
        self.previous_event = None
        self.deleted_users = _deleted_user_check()
        first = db.session.execute(select(_chain.c.seq, _chain.c.prev_hash).order_by(_chain.c.seq).limit(1)).first()
        if first is None:
            # Empty: nothing sealed yet, or a retention purge removed every link (the chain goes on from its cut).
            with db.engine.connect() as conn:
                cut = latest_purge_cut(conn)
            self.expected_seq = self.expected_prev = None
            self.last_seq = cut["seq"] if cut else 0
            return
        self.expected_prev = _anchor(first.seq, first.prev_hash)
        if self.expected_prev is None:
            result.problem(f"The chain starts at link {first.seq} without a retention purge that cut it "
                           "there: earlier events were deleted.")
            self.expected_prev = first.prev_hash
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
        if m[_table.c.id] is None:
            result.problem(f"Event {audit_id} (link {link_seq}) was deleted.")
        else:
            self._check_event(m, audit_id, link_seq, link_prev, link_digest)
        if m[_chain.c.late]:
            result.late += 1
            if len(result.late_events) < 20:
                result.late_events.append(audit_id)
        self.expected_prev, self.expected_seq = link_digest, link_seq + 1
        self.previous_event = audit_id
        result.checked += 1
        self.last_seq = link_seq

    def _check_event(self, m, audit_id, link_seq, link_prev, link_digest) -> None:
        stored_user, sealed_user = m[_table.c.user_id], m[_chain.c.user_id]
        if stored_user != sealed_user and not (stored_user is None and self.deleted_users(sealed_user)):
            self.result.problem(f"Event {audit_id} (link {link_seq}): its user was changed.")
        recomputed = link_hash(link_prev, _RowView(m), sealed_user)
        if not hmac.compare_digest(recomputed, link_digest):
            self.result.problem(f"Event {audit_id} (link {link_seq}) was changed after it was recorded.")


class _RowView:
    """Attribute access to the audit columns of a joined row."""

    def __init__(self, mapping):
        self._m = mapping

    def __getattr__(self, name):
        try:
            return self._m[_table.c[name]]
        except KeyError:
            raise AttributeError(name) from None


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
                                                           "at": at.isoformat() if at else "?"}))
    return points


def _check_checkpoints(result: VerifyResult) -> None:
    truncated = rewritten = False
    for source, point in _recorded_checkpoints():
        seq = point.get("seq")
        if not isinstance(seq, int):
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
              username=actor.username if actor else None, transactional=True)
    db.session.commit()
