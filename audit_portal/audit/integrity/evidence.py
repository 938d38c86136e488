"""An export an auditor can check without the application: the events (with their salts, so that the commitments
can be recomputed), a line for every other link of the range they fall in, and the signed digests covering it
(``flask audit export --format ndjson --with-digests DIR``; ``scripts/verify_audit_export.py`` checks it).

Lines (one JSON object each): first ``{"type": "export", "filters", "first_seq", "last_seq"}`` (what was asked
for, so the auditor knows why links are withheld), then, in chain order:

- ``{"type": "event", "seq", "event": {every column, user_id as sealed}, "salts", "erased", "row_hash"}`` for an
  exported event;
- ``{"type": "link", "seq", "timestamp", "category", "row_hash", "purged"}`` for every other link: an event the
  filters left out (its row hash proves it without showing it), or a purged event's tombstone.

The range runs from the first link of the digest that covers the first matching event (of the first digest for an
export without filters) to the last digest's last link, so the verifier can rebuild the public chain from one signed
head to another; every digest goes into the directory. Events sealed after the last digest are left out (the command
says how many): nothing vouches for them yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from ...extensions import db
from ..read.query import AuditFilters, apply_filters
from ..record.models import AuditChainLink, AuditLog
from . import canonical as form
from .digests import write_digest_file
from .models import AuditDigest

BATCH = 5000
_table = AuditLog.__table__
_chain = AuditChainLink.__table__


def _jsonable(filters: dict) -> dict:
    return {name: value.isoformat() if hasattr(value, "isoformat") else value for name, value in filters.items()}


class NoDigests(ValueError):
    """Nothing is signed yet: there is nothing an export could be checked against."""


@dataclass
class Evidence:
    events: int = 0
    links: int = 0
    digests: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    #: Matching events not exported because no digest covers them yet.
    unsigned: int = 0


def write_evidence(filters: AuditFilters, out, digest_dir: str | Path) -> Evidence:
    """Write the events matching ``filters`` and the links around them to ``out`` (a text stream), and the digests
    covering them into ``digest_dir``."""
    session = db.session
    digests = list(session.scalars(select(AuditDigest).order_by(AuditDigest.first_seq)))
    if not digests:
        raise NoDigests("No signed digests yet: run the sealer (flask --app wsgi audit sealer --once) first.")
    signed_to = digests[-1].last_seq
    matching = apply_filters(select(_table.c.id), filters).subquery()
    first_match = session.scalar(select(func.min(_chain.c.seq)).join(matching, matching.c.id == _chain.c.audit_log_id))
    result = Evidence()
    result.unsigned = session.scalar(select(func.count()).select_from(_chain)
                                     .join(matching, matching.c.id == _chain.c.audit_log_id)
                                     .where(_chain.c.seq > signed_to)) or 0
    if first_match is None or first_match > signed_to:
        start = None  # nothing signed matches
    elif not filters.active():
        start = digests[0]  # the whole log: from the first digest, so that a deleted prefix shows
    else:
        start = next(d for d in digests if d.last_seq >= first_match)  # from the digest that covers the first match
    directory = Path(digest_dir)
    # Every digest, whatever the range: the verifier checks their whole sequence, and reads the purge records they
    # carry (a purge signed into an earlier digest explains tombstones in the range).
    for digest in digests:
        write_digest_file(directory, digest.last_seq, digest.body, digest.signature)  # as the sealer ships them
    result.digests = len(digests)
    if start is None:
        return result
    result.first_seq, result.last_seq = start.first_seq, signed_to
    out.write(json.dumps({"type": "export", "filters": _jsonable(filters.active()), "first_seq": result.first_seq,
                          "last_seq": result.last_seq}, sort_keys=True, ensure_ascii=False) + "\n")
    # Correlated to the link only: the subquery reads audit_logs itself (it would otherwise melt into the outer
    # query's audit_logs and have no FROM left).
    wanted = (apply_filters(select(_table.c.id), filters).where(_table.c.id == _chain.c.audit_log_id)
              .correlate(_chain).exists())
    seq = result.first_seq - 1
    while seq < signed_to:
        query = (select(_chain, _table, wanted.label("wanted"))
                 .outerjoin(_table, _table.c.id == _chain.c.audit_log_id)
                 .where(_chain.c.seq > seq, _chain.c.seq <= signed_to).order_by(_chain.c.seq).limit(BATCH))
        rows = session.execute(query).all()
        if not rows:
            break
        for row in rows:
            m = row._mapping
            seq = m[_chain.c.seq]
            if m[_table.c.id] is not None and m["wanted"]:
                line = {"type": "event", "seq": seq,
                        "event": form.canonical_dict(form.JoinedRow(m), m[_chain.c.user_id]),
                        "salts": m[_chain.c.salts] or {}, "erased": m[_chain.c.erased] or {},
                        "row_hash": m[_chain.c.row_hash]}
                result.events += 1
            else:
                line = {"type": "link", "seq": seq, "timestamp": form.iso(m[_chain.c.event_timestamp]),
                        "category": m[_chain.c.category], "row_hash": m[_chain.c.row_hash],
                        "purged": m[_table.c.id] is None}
                result.links += 1
            out.write(json.dumps(line, sort_keys=True, ensure_ascii=False, default=str) + "\n")
    return result
