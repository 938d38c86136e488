"""Verifying the signed digests against the public keys an auditor trusts, and against the chain they sign.

Each digest must verify with a given public key; the first digest may be signed by any of them, every later one by
the key the one before left in force (its own, or the ``next_key_fingerprint`` it named: a rotation). Each must
name the previous digest's signature and start right after it (no gap), and the heads it signed must still be the
public chain's hashes at its ends. DIGEST_SIGNED events (in the chain) name every digest, so a deleted newest
digest is noticed too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import func, select

from ...extensions import db
from ..record.enums import ActionType
from ..record.models import AuditChainLink, AuditLog
from .canonical import GENESIS
from .digests import chain_start
from .models import AuditDigest
from .seal import purge_cuts
from .signing import fingerprint, signature_ok
from .tombstones import as_record, load_purges, same_purge

_chain = AuditChainLink.__table__
_digests = AuditDigest.__table__
_table = AuditLog.__table__
BATCH = 500
#: The columns stored beside the body, for queries; they must say what the signed body says.
_MIRRORED = ("first_seq", "last_seq", "head", "key_fingerprint")


@dataclass
class DigestReport:
    checked: int = 0
    last_seq: int = 0
    problems: list[str] = field(default_factory=list)
    #: Fingerprints of the keys that signed the digests, in the order they took over.
    keys_used: list[str] = field(default_factory=list)


def _short(fp: str | None) -> str:
    return f"{fp[:16]}…" if fp else "none"


class _Walk:
    def __init__(self, public_keys):
        self.keys = {fingerprint(k): k for k in public_keys}
        self.report = DigestReport()
        self.previous = None  # (row, body) of the previous digest
        self.in_force: str | None = None
        #: The highest link a legacy retention purge cut away (with its links): digests below it cannot be compared
        #: with the chain any more.
        with db.engine.connect() as conn:
            self.cut_to = max((cut["seq"] for cut in purge_cuts(conn)), default=0)
        #: Keys not given, by fingerprint: [the first digest signed by it, how many]; reported once each, at the end.
        self.unknown: dict[str, list] = {}
        #: The retention purges the digests carry, by id: (the digest's id, the purge as signed).
        self.signed_purges: dict[int, tuple[int, dict]] = {}

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def step(self, row, hashes: dict[int, str | None]) -> None:
        label = f"Digest {row.id} (links {row.first_seq} to {row.last_seq})"
        try:
            body = json.loads(row.body)
        except ValueError:
            self.problem(f"{label}: its body is not JSON: it was edited after it was signed.")
            return
        self._signature(label, row, body)
        for name in _MIRRORED:
            if getattr(row, name) != body.get(name):
                self.problem(f"{label}: its {name} column ({getattr(row, name)}) differs from its signed body "
                             f"({body.get(name)}): the row was edited.")
        self._linkage(label, row, body)
        self._heads(label, body, hashes)
        for purge in body.get("purges") or []:
            if isinstance(purge, dict) and isinstance(purge.get("id"), int):
                self.signed_purges[purge["id"]] = (row.id, purge)
        if body.get("key_fingerprint") and body["key_fingerprint"] not in self.report.keys_used:
            self.report.keys_used.append(body["key_fingerprint"])
        self.in_force = body.get("next_key_fingerprint") or body.get("key_fingerprint")
        self.previous = (row, body)
        self.report.checked += 1
        self.report.last_seq = max(self.report.last_seq, row.last_seq)

    def _signature(self, label, row, body) -> None:
        named = body.get("key_fingerprint")
        if self.in_force is not None and named != self.in_force:
            self.problem(f"{label} is signed by key {_short(named)}, but the digest before it left key "
                         f"{_short(self.in_force)} in force: it was signed by another key.")
        key = self.keys.get(named)
        if key is None:
            self.unknown.setdefault(named, [label, 0])[1] += 1
        elif not signature_ok(key, row.body.encode("utf-8"), row.signature):
            self.problem(f"{label}: its signature does not verify with key {_short(named)}: the digest was edited "
                         "after it was signed, or signed by another key.")

    def _linkage(self, label, row, body) -> None:
        first, last = body.get("first_seq"), body.get("last_seq")
        if isinstance(first, int) and isinstance(last, int) and body.get("count") != last - first + 1:
            self.problem(f"{label}: its count ({body.get('count')}) does not match its range.")
        if self.previous is None:
            if body.get("previous_signature") is not None:
                self.problem(f"{label} is the first stored digest but names a previous one: earlier digests were "
                             "deleted.")
            return
        prev_row, prev_body = self.previous
        if body.get("previous_signature") != prev_row.signature:
            self.problem(f"{label} does not name the signature of digest {prev_row.id} before it: a digest between "
                         "them was removed, or one of them was replaced.")
        if body.get("prev_head") != prev_body.get("head"):
            self.problem(f"{label} does not continue from the head digest {prev_row.id} signed.")
        expected = prev_body.get("last_seq", prev_row.last_seq) + 1
        if isinstance(first, int) and first > expected:
            self.problem(f"Links {expected} to {first - 1} are in no digest (between digests {prev_row.id} and "
                         f"{row.id}): a digest was deleted.")
        elif isinstance(first, int) and first < expected:
            self.problem(f"{label} overlaps digest {prev_row.id} (which ends at link {expected - 1}).")

    def _heads(self, label, body, hashes) -> None:
        for name, seq in (("prev_head", (body.get("first_seq") or 1) - 1), ("head", body.get("last_seq"))):
            if not isinstance(seq, int):
                continue
            stored = GENESIS if seq == 0 else hashes.get(seq)
            if stored is None and name == "prev_head" and self.previous is None:
                with db.engine.connect() as conn:
                    stored = chain_start(conn, seq)  # the first digest may start where a legacy purge cut the chain
            if stored is None and seq <= self.cut_to:
                continue  # cut away by a recorded purge (before tombstones): nothing left to compare
            if stored is None:
                self.problem(f"{label}: link {seq}, which it signed, is missing from the chain.")
            elif stored != body.get(name):
                self.problem(f"{label}: the public chain's hash at link {seq} is not the one the digest signed: the "
                             "chain was changed (or recomputed) after it was signed.")


def _hashes(seqs: set[int]) -> dict[int, str | None]:
    wanted = sorted(s for s in seqs if s > 0)
    if not wanted:
        return {}
    rows = db.session.execute(select(_chain.c.seq, _chain.c.public_hash).where(_chain.c.seq.in_(wanted)))
    return dict(rows.all())


def check_digests(public_keys) -> DigestReport:
    """Walk every stored digest, oldest first, and report the problems (all of them; the caller shows the first)."""
    walk = _Walk(public_keys)
    after = -1
    while True:
        rows = db.session.execute(select(_digests).where(_digests.c.last_seq > after)
                                  .order_by(_digests.c.last_seq).limit(BATCH)).all()
        if not rows:
            break
        hashes = _hashes({r.first_seq - 1 for r in rows} | {r.last_seq for r in rows})
        for row in rows:
            walk.step(row, hashes)
        after = rows[-1].last_seq
    for named, (first, count) in walk.unknown.items():
        walk.problem(f"{first}{f' and {count - 1} digest(s) after it' if count > 1 else ''}: signed by key {named}, "
                     "which is not among the public keys given (AUDIT_PUBLIC_KEY_FILE): signed by another key, or "
                     "that key's public half is missing from the file.")
    _check_recorded(walk)
    _check_signed_purges(walk)
    return walk.report


def _check_signed_purges(walk: _Walk) -> None:
    """A purge a digest signed must still be stored as signed: widening its cutoffs or dropping its holds afterwards
    would pass deletions off as purged."""
    with db.engine.connect() as conn:
        stored = {record.id: record for record in load_purges(conn)}
    for purge_id, (digest_id, signed) in sorted(walk.signed_purges.items()):
        record = stored.get(purge_id)
        try:
            same = record is not None and same_purge(record, as_record(signed))
        except (TypeError, ValueError, KeyError):
            same = False
        if not same:
            walk.problem(f"Retention purge {purge_id} differs from the copy digest {digest_id} signed (or is gone): "
                         "its record was edited after it was signed.")


def _check_recorded(walk: _Walk) -> None:
    """Every DIGEST_SIGNED event names a digest that must still be stored (the newest one included)."""
    recorded = db.session.scalars(select(_table.c["metadata"])
                                  .where(_table.c.action_type == ActionType.DIGEST_SIGNED.value)).all()
    stored = set(db.session.scalars(select(_digests.c.last_seq)))
    missing = sorted({m["last_seq"] for m in recorded if isinstance(m, dict) and isinstance(m.get("last_seq"), int)}
                     - stored)
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        walk.problem(f"{len(missing)} digest(s) recorded by DIGEST_SIGNED events are not stored (ending at links "
                     f"{shown}): they were deleted.")


def digest_count() -> int:
    return db.session.scalar(select(func.count()).select_from(_digests)) or 0
