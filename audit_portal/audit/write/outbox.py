"""The transactional outbox: a domain event commits with its change at the least cost, and reaches ``audit_logs``
in the background writer's next batch.

Write path 1 (docs/audit-logging-guide.md) on PostgreSQL with AUDIT_OUTBOX (the default): ``log_audit(...,
transactional=True)`` inserts the event as one JSON payload into ``audit_outbox``, a heap with no index and no key,
in the change's own transaction. It commits or rolls back with the change exactly as an insert into
``audit_logs`` did, for about a quarter of the database's work (docs/performance.md). The writer then moves the
outbox's rows into ``audit_logs`` in the same transaction that deletes them, so each is moved exactly once
whichever process moves it (``FOR UPDATE SKIP LOCKED``: several writers take disjoint rows), together with its own
batch: after a commit that added one (``wake_on_commit``; a running writer is woken, none is started), when idle
every few seconds (rows left by a process that died), at ``flush()`` and at exit. A move keeps the event's id and
time, skips an event id already stored, and salvages a refused row as the writer does its own (``store.py``). What
is in the outbox is durable: a crash or an outage delays the move, never loses the event. AUDIT_OUTBOX decides only
where new events go: on PostgreSQL the writers always move what the outbox holds.

SQLite keeps the direct insert: there the outbox table stays empty.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from datetime import datetime

from flask import current_app
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.orm import Session

from ...extensions import db
from ...timeutil import utcnow
from ..record import partitions
from .inserts import encode_json, insert_events
from .store import database_unavailable, stand_in, store_events, store_one_by_one

log = logging.getLogger(__name__)

#: The most rows one move takes (one transaction): the writer's own batch bound.
TAKE_LIMIT = 500

_ADD = "INSERT INTO audit_outbox (payload) VALUES (%s)"
#: Rows by their physical position (the table has no key); rows being moved by another transaction are skipped.
_TAKE = ("DELETE FROM audit_outbox WHERE ctid = ANY(ARRAY("
         "SELECT ctid FROM audit_outbox LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING payload")
#: ``Session.info`` key: the writer to wake when the session's transaction commits.
_WAKE = "audit_outbox_writer"


def in_use(connection) -> bool:
    """True when new domain events on ``connection`` go through the outbox: PostgreSQL with AUDIT_OUTBOX."""
    return connection.dialect.name == "postgresql" and bool(current_app.config.get("AUDIT_OUTBOX", True))


def add(connection, event: dict) -> None:
    """Insert ``event`` into the outbox, in ``connection``'s current transaction. What ``insert_events`` would refuse
    is refused here, in the change's transaction: a naive time or a value JSON cannot carry (``ValueError``,
    ``TypeError``), a time no month can hold; the event's month gets its partition now if it has none (one dictionary
    lookup when it has), so that the move never meets a row it cannot store."""
    partitions.ensure_for_events(connection, [event])
    connection.exec_driver_sql(_ADD, (encode_json(event),))


def wake_on_commit(session: Session, writer) -> None:
    """Have ``writer`` move the outbox soon after ``session``'s transaction commits."""
    session.info[_WAKE] = writer


def _after_commit(session: Session) -> None:
    # A rollback leaves the mark (a savepoint's rollback must not cancel the wake-up of the commit that follows): at
    # worst a later commit wakes the writer for a move that finds nothing.
    writer = session.info.pop(_WAKE, None)
    if writer is not None:
        writer.outbox_committed()


if not sa_event.contains(Session, "after_commit", _after_commit):
    sa_event.listen(Session, "after_commit", _after_commit)


def _event(payload) -> dict:
    """The event a payload holds; one that cannot be read back (written by hand, say) becomes an AUDIT_FAILURE
    stand-in that keeps it as text, so that it never blocks the moves."""
    try:
        event = dict(payload) if isinstance(payload, dict) else json.loads(payload)
        event["timestamp"] = datetime.fromisoformat(event["timestamp"])
        if event["timestamp"].utcoffset() is None:
            raise ValueError("a naive time")
        return event
    except Exception as exc:  # noqa: BLE001
        log.error("audit outbox: a row could not be read back (%s); stored as an AUDIT_FAILURE stand-in",
                  type(exc).__name__)
        return stand_in({"event_id": None, "payload": payload}, exc, utcnow())


def take(connection, limit: int = TAKE_LIMIT) -> list[dict]:
    """Delete up to ``limit`` rows from the outbox (in ``connection``'s transaction) and return their events."""
    return [_event(payload) for (payload,) in connection.exec_driver_sql(_TAKE, (limit,))]


@contextmanager
def _savepoint(connection):
    with connection.begin_nested():
        yield connection


def store_and_move(connection_factory, events: list[dict]) -> int:
    """Store ``events`` (the writer's batch; may be empty) and move up to TAKE_LIMIT outbox rows into ``audit_logs``,
    in one transaction; returns how many rows were moved. If the database refuses some row, the outbox's rows are
    moved one by one (each in a savepoint of the transaction that takes them: salvaged or kept as a stand-in, as
    ``store.py`` does) and ``events`` are stored by ``store_events``. Raises only when the database is unreachable:
    then the outbox keeps its rows and the caller keeps ``events``."""
    try:
        with connection_factory() as connection:
            moved = take(connection)
            if moved or events:
                insert_events(connection, moved + events, ignore_duplicates=True)
            return len(moved)
    except Exception as exc:
        if database_unavailable(exc):
            raise
        log.warning("audit outbox: a move was refused (%s); moving row by row", type(exc).__name__)
    moved = []
    try:
        with connection_factory() as connection:
            moved = take(connection)
            store_one_by_one(lambda: _savepoint(connection), moved)
    except Exception as exc:
        if database_unavailable(exc):
            raise
        # Not even a stand-in could be stored: the rows stay in the outbox (named in the log), and the writer's own
        # events must not wait for them.
        log.critical("audit outbox: %d rows could not be moved (%s); they stay in audit_outbox", len(moved),
                     type(exc).__name__, exc_info=True)
        moved = []
    store_events(connection_factory, events)
    return len(moved)


def move_all(connection_factory) -> int:
    """Move everything the outbox holds now (before an erasure, say); returns how many rows."""
    total = 0
    while True:
        moved = store_and_move(connection_factory, [])
        total += moved
        if moved < TAKE_LIMIT:
            return total


class Mover:
    """The background writer's side of the outbox: whether there is one to move (known at the first use) and the moves.
    ``engine``: a callable that returns the engine to use."""

    def __init__(self, engine):
        self._engine = engine
        self._in_use: bool | None = None

    def in_use(self) -> bool:
        """True on PostgreSQL, whatever AUDIT_OUTBOX says now: rows committed while it was on are still moved."""
        if self._in_use is None:
            self._in_use = self._engine().dialect.name == "postgresql"
        return self._in_use

    def store(self, batch: list[dict]) -> bool:
        """Store ``batch``, with the outbox's rows moved along when the app uses it; True when more rows wait there.
        Raises as ``store_events`` does."""
        if not self.in_use():
            store_events(lambda: self._engine().begin(), batch)
            return False
        return store_and_move(lambda: self._engine().begin(), batch) >= TAKE_LIMIT

    def move_all_quietly(self) -> None:
        """Move everything in the outbox now (an idle writer, exit). Never raises: what is not moved waits there."""
        try:
            if self.in_use():
                move_all(lambda: self._engine().begin())
        except Exception as exc:  # noqa: BLE001
            (log.debug if database_unavailable(exc) else log.warning)(
                "audit outbox: could not move its rows (%s: %s); will retry", type(exc).__name__,
                str(exc).split("\n", 1)[0][:300])


def backlog() -> tuple[int, float]:
    """(events waiting in the outbox, age in seconds of the oldest of them; 0 when none), for ``/metrics``."""
    if db.engine.dialect.name != "postgresql":
        return 0, 0.0
    count, age = db.session.execute(text(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min((payload->>'timestamp')::timestamptz)), 0) "
        "FROM audit_outbox")).one()
    return count, max(0.0, float(age))


def move_committed() -> int:
    """Move what the outbox holds now, if the app uses it: before a foreground seal, so that it covers every committed
    domain event (an erasure's, a verification's). Returns how many rows."""
    if db.engine.dialect.name != "postgresql":
        return 0
    return move_all(db.engine.begin)


def drain(connection) -> int:
    """Move everything the outbox holds, in ``connection``'s own transaction (a migration's); returns how many."""
    total = 0
    while True:
        moved = take(connection)
        if moved:
            insert_events(connection, moved, ignore_duplicates=True)
        total += len(moved)
        if len(moved) < TAKE_LIMIT:
            return total
