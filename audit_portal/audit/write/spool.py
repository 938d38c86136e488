"""A local, fsync'd spool for events that could not reach the database; replayed once it is back."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

SPOOL_NAME = "audit-spool.ndjson"


def _encode(event: dict) -> str:
    return json.dumps({**event, "timestamp": event["timestamp"].isoformat()}, default=str)


def _decode(line: str) -> dict:
    event = json.loads(line)
    event["timestamp"] = datetime.fromisoformat(event["timestamp"])
    return event


class Spool:
    """One append-only JSON-lines file shared by every process of one deployment (``flock`` serialises them)."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        self.path = Path(directory) / SPOOL_NAME
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self):
        with open(self.path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def pending_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def pending_events(self) -> int:
        """How many events wait in the spool (its lines; read without the lock: a line being appended may be
        missed). Reads the whole file: up to AUDIT_SPOOL_MAX_BYTES."""
        count = 0
        try:
            with open(self.path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    count += chunk.count(b"\n")
        except FileNotFoundError:
            return 0
        return count

    def append(self, events: list[dict]) -> int:
        """Write ``events`` durably; return how many were kept (none once the spool is full)."""
        data = "".join(_encode(e) + "\n" for e in events)
        with self._locked() as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() + len(data) > self.max_bytes:
                log.warning(
                    "audit spool %s is full (%d bytes, AUDIT_SPOOL_MAX_BYTES=%d): %d events dropped",
                    self.path, fh.tell(), self.max_bytes, len(events),
                )
                return 0
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return len(events)

    def replay(self, write_batch, batch_size: int = 500) -> int:
        """Pass every spooled event to ``write_batch`` (which must be idempotent), then empty the spool.

        If ``write_batch`` raises, the spool is left as it was and the error propagates.
        """
        if self.pending_bytes() == 0:
            return 0
        replayed = 0
        with self._locked() as fh:
            fh.seek(0)
            batch: list[dict] = []
            for line in fh:
                if not line.strip():
                    continue
                try:
                    batch.append(_decode(line))
                except (ValueError, KeyError):
                    log.error("audit spool: skipping an unreadable line: %r", line[:200])
                    continue
                if len(batch) >= batch_size:
                    write_batch(batch)
                    replayed += len(batch)
                    batch = []
            if batch:
                write_batch(batch)
                replayed += len(batch)
            fh.truncate(0)
            fh.flush()
            os.fsync(fh.fileno())
        if replayed:
            log.warning("audit spool: replayed %d events into the database", replayed)
        return replayed
