"""Storing a batch of events so that none is lost: duplicates skipped, a refused row salvaged or kept as text."""

from __future__ import annotations

import json
import logging

from sqlalchemy import exc as sa_exc

from ...timeutil import utcnow
from ..record.enums import ActionType, ResourceType, Status
from ..record.events import build_event
from .inserts import insert_events

log = logging.getLogger(__name__)


def insert_ignoring_duplicates(connection, events: list[dict]) -> None:
    """Insert ``events`` in one statement; rows whose ``event_id`` is already stored are skipped."""
    insert_events(connection, events, ignore_duplicates=True)


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached (as opposed to refusing particular rows)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                            sa_exc.TimeoutError, OSError))


def _salvaged(event: dict) -> dict:
    """``event`` without its user reference: the user may have been deleted since (a foreign key
    violation); the username snapshot keeps the row readable."""
    note = {"audit_note": f"user id {event['user_id']} was not found when this event was written"}
    return {**event, "user_id": None, "metadata": {**(event.get("metadata") or {}), **note}}


def stand_in(event: dict, exc: BaseException, timestamp=None) -> dict:
    """An AUDIT_FAILURE event that keeps what the database refused to store (as bounded text), so one
    unstorable row never blocks the writer or the spool, and is not lost either. At the event's own time, unless
    ``timestamp`` is given (the event's time may be what was refused)."""
    original = json.dumps({k: v for k, v in event.items() if k != "timestamp" or timestamp is not None},
                          default=str)[:8000]
    return build_event(
        ActionType.AUDIT_FAILURE, ResourceType.SYSTEM, None,
        f"The database refused audit event {event.get('event_id')} ({type(exc).__name__}); kept here as text",
        timestamp=timestamp or event["timestamp"], status=Status.ERROR,
        metadata={"refused_event": original, "error": type(exc).__name__},
    )


def store_events(connection_factory, events: list[dict]) -> None:
    """Insert ``events`` idempotently. If the database refuses the batch because of some rows (not because
    it is unreachable), the rows are written one by one: a row refused for its user reference is written
    without it, and a row refused for anything else is written as an AUDIT_FAILURE stand-in that holds it as
    text, so one bad event never holds back the others (nor the spool's replay). Raises only when the
    database is unreachable (the caller keeps the batch for replay)."""
    if not events:
        return
    try:
        with connection_factory() as connection:
            insert_ignoring_duplicates(connection, events)
        return
    except Exception as exc:
        if database_unavailable(exc):
            raise
        first_error = exc
    log.warning("audit writer: a batch of %d events was refused (%s); writing them one by one",
                len(events), type(first_error).__name__)
    store_one_by_one(connection_factory, events)


def store_one_by_one(connection_factory, events: list[dict]) -> None:
    """Insert each of ``events`` in its own transaction (``connection_factory``'s: a new transaction, or a
    savepoint): as it is, else without its user reference, else as an AUDIT_FAILURE stand-in. Raises only when the
    database is unreachable."""
    for event in events:
        try:
            with connection_factory() as connection:
                insert_ignoring_duplicates(connection, [event])
            continue
        except Exception as exc:
            if database_unavailable(exc):
                raise
            refusal = exc
        if event.get("user_id") is not None:
            try:
                with connection_factory() as connection:
                    insert_ignoring_duplicates(connection, [_salvaged(event)])
                log.warning("audit writer: event %s written without its user reference (%s)",
                            event["event_id"], type(refusal).__name__)
                continue
            except Exception as exc:
                if database_unavailable(exc):
                    raise
                refusal = exc
        try:
            with connection_factory() as connection:
                insert_ignoring_duplicates(connection, [stand_in(event, refusal)])
        except Exception as exc:
            if database_unavailable(exc):
                raise
            with connection_factory() as connection:  # its time itself was refused: the stand-in carries it as text
                insert_ignoring_duplicates(connection, [stand_in(event, refusal, utcnow())])
        log.error("audit writer: event %s refused by the database (%s); stored as an AUDIT_FAILURE stand-in",
                  event.get("event_id"), type(refusal).__name__)
