"""Checkpoints of the hash chain's head: a line in a file in ``AUDIT_DATA_DIR`` (outside the database) and a
CHAIN_CHECKPOINT event (in it), every CHECKPOINT_EVERY links. ``verify`` compares the chain with both, which
catches a truncated tail or a chain recomputed without the key."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from ...extensions import db
from ...metrics.families import count_written
from ...timeutil import utcnow
from ..record.enums import ActionType, ResourceType
from ..record.events import build_event
from ..record.models import AuditChainLink
from ..write.inserts import insert_events

CHECKPOINT_EVERY = 1000
CHECKPOINT_FILE = "chain-checkpoints.ndjson"
_chain = AuditChainLink.__table__


def _checkpoint_path() -> Path:
    return Path(current_app.config["AUDIT_DATA_DIR"]) / CHECKPOINT_FILE


def read_checkpoints() -> list[dict]:
    path = _checkpoint_path()
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def last_checkpoint() -> dict | None:
    """The newest checkpoint: the file's last line that holds a JSON object. Reads only the end of the file:
    every background seal pass asks, and the file gains a line per CHECKPOINT_EVERY links for as long as the
    log lives."""
    try:
        with open(_checkpoint_path(), "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            block = 4096
            while True:
                start = max(0, size - block)
                fh.seek(start)
                lines = fh.read().splitlines()
                for line in reversed(lines[1:] if start else lines):  # the block's first line may be cut
                    try:
                        point = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(point, dict):
                        return point
                if not start:
                    return None
                block *= 8
    except FileNotFoundError:
        return None


def maybe_checkpoint(force: bool = False) -> dict | None:
    """Record the chain head when it moved on by CHECKPOINT_EVERY links (or ``force``)."""
    # Its own connection: rolling back the caller's session here would throw away the caller's work.
    with db.engine.connect() as conn:
        head = conn.execute(select(_chain.c.seq, _chain.c.link_hash).order_by(_chain.c.seq.desc()).limit(1)).first()
    if head is None:
        return None
    last = last_checkpoint()
    last_seq = last["seq"] if last else 0
    if not force and head.seq - last_seq < CHECKPOINT_EVERY:
        return None
    if head.seq == last_seq:
        return last
    point = {"seq": head.seq, "hash": head.link_hash, "at": utcnow().isoformat()}
    path = _checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(point) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    event = build_event(ActionType.CHAIN_CHECKPOINT, ResourceType.AUDIT_LOG, str(head.seq),
                        f"Audit chain checkpoint at link {head.seq}", timestamp=utcnow(),
                        metadata={"seq": head.seq, "hash": head.link_hash})
    with db.engine.begin() as conn:
        insert_events(conn, [event])
    if current_app.config.get("METRICS_ENABLED"):
        count_written([event])
    return point
