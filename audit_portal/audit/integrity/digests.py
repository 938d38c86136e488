"""Signed digests of the public chain: every AUDIT_DIGEST_EVERY_EVENTS links (or AUDIT_DIGEST_EVERY_SECONDS), the
sealer process signs what the chain holds since the last digest, with an Ed25519 key the web workers never hold.

A digest's body (canonical JSON, signed as those exact bytes) names its range of links, the public chain's hash
before and at the end of it, the time range, the previous digest's signature (so that digests form a chain of their
own), the signing key's fingerprint, the key that signs next (rotation), and the retention purges since the previous
digest. Each digest is stored in ``audit_digests``, written to ``AUDIT_DIGEST_DIR`` as a file for shipping off the
host, and recorded as a DIGEST_SIGNED event (which the next digest covers). ``digest_check.py`` verifies them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, insert, select, text

from ...extensions import db
from ...metrics.families import count_written
from ...timeutil import utcnow
from ..delivery.locks import DIGESTS
from ..record.enums import ActionType, ResourceType
from ..record.events import build_event
from ..record.models import AuditChainLink
from ..write.inserts import insert_events
from .canonical import GENESIS, encode
from .models import AuditDigest, AuditPurge
from .seal import purge_cuts
from .signing import SigningKey, fingerprint, load_public_keys, public_pem

DIGEST_VERSION = 1
_chain = AuditChainLink.__table__
_digests = AuditDigest.__table__
_purges = AuditPurge.__table__


class KeyMismatch(RuntimeError):
    """The sealer holds no key that may sign the next digest (the last digest names another)."""


@dataclass(frozen=True)
class SealerKeys:
    """The keys a sealer holds: the current one and, during a rotation, the next one."""

    current: SigningKey
    next: SigningKey | None = None

    def for_next_digest(self, last_body: dict | None) -> tuple[SigningKey, str | None]:
        """(the key that signs the next digest, the fingerprint that digest announces as next or None).

        The last digest decides: it was signed by a key and may have named the next one; that one signs now. So a
        sealer restarted in the middle of a rotation carries on with the right key."""
        held = {k.fingerprint: k for k in (self.current, self.next) if k is not None}
        if last_body is None:
            in_force = self.current.fingerprint
        else:
            in_force = last_body.get("next_key_fingerprint") or last_body.get("key_fingerprint")
        key = held.get(in_force)
        if key is None:
            raise KeyMismatch(
                f"The last digest (links up to {last_body.get('last_seq')}) leaves key {in_force} in force, but "
                f"AUDIT_SIGNING_KEY_FILE holds key {self.current.fingerprint}"
                + (f" and AUDIT_NEXT_SIGNING_KEY_FILE key {self.next.fingerprint}" if self.next else "")
                + ": give the sealer the key that signed the last digest (see docs/compliance.md, 'Key rotation').")
        announce = self.next.fingerprint if self.next and self.next.fingerprint != key.fingerprint else None
        return key, announce


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="microseconds") if moment else None


def digest_dir() -> Path:
    return Path(current_app.config["AUDIT_DIGEST_DIR"])


def digest_file_name(last_seq: int) -> str:
    return f"digest-{last_seq:012d}.json"


def last_digest(conn):
    """The newest stored digest (the one that ends highest in the chain), or None."""
    return conn.execute(select(_digests).order_by(_digests.c.last_seq.desc()).limit(1)).first()


@dataclass
class Pending:
    """Links after the last digest: how many, from which position, and since when they wait."""

    first_seq: int | None
    head_seq: int
    count: int
    since: datetime | None


def pending(conn, last=None) -> Pending:
    after = last.last_seq if last is not None else 0
    row = conn.execute(select(func.min(_chain.c.seq), func.max(_chain.c.seq), func.count(), func.min(_chain.c.sealed_at))
                       .where(_chain.c.seq > after, _chain.c.public_hash.is_not(None))).one()
    since = last.created_at if last is not None else row[3]
    return Pending(first_seq=row[0], head_seq=row[1] or after, count=row[2] or 0, since=since)


def _lock(conn) -> None:
    """One signer at a time: two sealer processes must not sign the same range (``last_seq`` is unique anyway)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": DIGESTS})
    elif conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _public_hash_at(conn, seq: int) -> str | None:
    if seq == 0:
        return GENESIS
    return conn.scalar(select(_chain.c.public_hash).where(_chain.c.seq == seq))


def chain_start(conn, seq: int) -> str | None:
    """The public hash the chain continues from before link ``seq + 1``: link ``seq``'s, genesis, or, where a retention
    purge from before migration 0016 cut the chain at ``seq``, the public chain's restart there (genesis, or the hash
    the cut recorded). None when nothing accounts for the link being gone."""
    stored = _public_hash_at(conn, seq)
    if stored is not None:
        return stored
    for cut in purge_cuts(conn):
        if cut["seq"] == seq:
            return cut.get("public") or GENESIS
    return None


def _purges_since(conn) -> list[dict]:
    """The purges newer than the newest one an earlier digest carried. Bodies are canonical JSON, so a digest that
    carried none says exactly ``"purges":[]``."""
    carried = conn.scalar(select(_digests.c.body).where(_digests.c.body.not_like('%"purges":[]%'))
                          .order_by(_digests.c.last_seq.desc()).limit(1))
    seen = max((p.get("id", 0) for p in json.loads(carried).get("purges") or []), default=0) if carried else 0
    rows = conn.execute(select(_purges).where(_purges.c.id > seen).order_by(_purges.c.id))
    return [{"id": r.id, "at": iso(r.at), "cutoffs": r.cutoffs, "holds": r.holds, "head_seq": r.head_seq,
             "count": r.count} for r in rows]


def build_body(conn, first_seq: int, last_seq: int, previous, key_fingerprint: str, next_fingerprint: str | None,
               now: datetime) -> dict:
    """The body of the digest of links ``first_seq``..``last_seq`` (``docs/compliance.md``, "Signed digests")."""
    low, high = conn.execute(select(func.min(_chain.c.event_timestamp), func.max(_chain.c.event_timestamp))
                             .where(_chain.c.seq.between(first_seq, last_seq))).one()
    return {
        "version": DIGEST_VERSION, "first_seq": first_seq, "last_seq": last_seq, "count": last_seq - first_seq + 1,
        # Where the previous digest ended; the first digest starts from the link before its range (or where the chain
        # restarted after a legacy purge's cut, or genesis).
        "prev_head": previous.head if previous is not None else (chain_start(conn, first_seq - 1) or GENESIS),
        "head": _public_hash_at(conn, last_seq),
        "from": iso(low), "to": iso(high), "created_at": iso(now),
        "previous_signature": previous.signature if previous is not None else None,
        "key_fingerprint": key_fingerprint, "next_key_fingerprint": next_fingerprint,
        "purges": _purges_since(conn),
    }


def write_digest_file(directory: Path, last_seq: int, body_text: str, signature: str) -> Path:
    """``digest-<last_seq>.json``: ``{"body": <the signed text>, "signature"}``, written whole or not at all."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / digest_file_name(last_seq)
    partial = path.with_suffix(".json.partial")
    with open(partial, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"body": body_text, "signature": signature}, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)
    return path


def _sign_one(keys: SealerKeys, force: bool, now: datetime) -> dict | None:
    """Sign the next digest if one is due (``force``: whatever is waiting); return its body, or None."""
    config = current_app.config
    every_events, every_seconds = config["AUDIT_DIGEST_EVERY_EVENTS"], config["AUDIT_DIGEST_EVERY_SECONDS"]
    with db.engine.begin() as conn:
        _lock(conn)
        last = last_digest(conn)
        waiting = pending(conn, last)
        if not waiting.count:
            return None
        overdue = waiting.since is not None and now - waiting.since >= timedelta(seconds=every_seconds)
        if waiting.count < every_events and not (force or overdue):
            return None
        first_seq = waiting.first_seq
        # The every_events-th waiting link (positions have no gaps, but a digest must end on a stored link anyway).
        last_seq = conn.scalar(select(_chain.c.seq).where(_chain.c.seq >= first_seq, _chain.c.public_hash.is_not(None))
                               .order_by(_chain.c.seq).offset(every_events - 1).limit(1)) or waiting.head_seq
        key, announce = keys.for_next_digest(json.loads(last.body) if last is not None else None)
        body = build_body(conn, first_seq, last_seq, last, key.fingerprint, announce, now)
        body_text = encode(body).decode("utf-8")
        signature = key.sign(body_text.encode("utf-8"))
        conn.execute(insert(_digests).values(first_seq=first_seq, last_seq=last_seq, head=body["head"],
                                             created_at=now, key_fingerprint=key.fingerprint, body=body_text,
                                             signature=signature))
        note = f"; names key {announce[:16]}… to sign from now on" if announce else ""
        event = build_event(ActionType.DIGEST_SIGNED, ResourceType.AUDIT_LOG, str(last_seq),
                            f"Signed a digest of links {first_seq} to {last_seq} ({body['count']:,} events) with key "
                            f"{key.fingerprint[:16]}…{note}", timestamp=utcnow(),
                            metadata={"first_seq": first_seq, "last_seq": last_seq, "head": body["head"],
                                      "key_fingerprint": key.fingerprint, "next_key_fingerprint": announce,
                                      "signature": signature})
        insert_events(conn, [event])
        # Inside the transaction: a digest is stored only once its file is written (a failed commit leaves a file
        # that the next digest of the same range replaces).
        write_digest_file(digest_dir(), last_seq, body_text, signature)
    if config.get("METRICS_ENABLED"):
        count_written([event])
    return body


def sign_due_digests(keys: SealerKeys, force: bool = False, now: datetime | None = None) -> list[dict]:
    """Sign every digest that is due: one per AUDIT_DIGEST_EVERY_EVENTS waiting links, and one for the rest once
    AUDIT_DIGEST_EVERY_SECONDS have passed since the last digest (``force``: at once). Returns their bodies."""
    now = now or utcnow()
    signed = []
    while (body := _sign_one(keys, force, now)) is not None:
        signed.append(body)
    return signed


def digest_status() -> dict:
    """For the Integrity page: the newest digest, how many links wait for the next, and whether a sealer is signing
    (a running sealer signs at least every AUDIT_DIGEST_EVERY_SECONDS: its own DIGEST_SIGNED event always waits)."""
    with db.engine.connect() as conn:
        last = last_digest(conn)
        waiting = pending(conn, last)
    config = current_app.config
    age = (utcnow() - last.created_at).total_seconds() if last is not None else None
    late_after = 2 * config["AUDIT_DIGEST_EVERY_SECONDS"] + config["AUDIT_SEALER_INTERVAL"]
    return {"last": last, "waiting": waiting.count, "age_seconds": age,
            "signing": age is not None and age <= late_after, "late_after": late_after}


def list_digests(skip: int, limit: int) -> dict:
    """A page of the stored digests, newest first: each one's body fields, the exact signed text and signature."""
    total = db.session.scalar(select(func.count()).select_from(_digests)) or 0
    rows = db.session.execute(select(_digests).order_by(_digests.c.last_seq.desc()).offset(skip).limit(limit)).all()
    items = [{**_fields(r.body), "id": r.id, "body": r.body, "signature": r.signature} for r in rows]
    return {"items": items, "total": total, "skip": skip, "limit": limit}


def _fields(body: str) -> dict:
    """A body's fields; none for a body that is not JSON (edited in the database: ``audit verify`` says so)."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def published_keys() -> list[dict] | None:
    """The public keys of AUDIT_PUBLIC_KEY_FILE as ``{"fingerprint", "pem"}`` (None when it is not set).
    Raises ``KeyFileError`` when the file does not parse."""
    path = current_app.config["AUDIT_PUBLIC_KEY_FILE"]
    if not path:
        return None
    return [{"fingerprint": fingerprint(key), "pem": public_pem(key)} for key in load_public_keys(path)]
