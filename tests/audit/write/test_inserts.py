"""The insert path every audit row takes (``audit/write/inserts.py``): what goes in is what is stored, column for column,
on SQLite and on PostgreSQL (where several rows travel as one JSON parameter and a single row as a plain
VALUES)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from audit_portal.audit.record.enums import ActionType, ErrorSeverity, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import EVENT_COLUMNS, AuditLog
from audit_portal.audit.write.inserts import insert_events
from audit_portal.extensions import db

_table = AuditLog.__table__


def _stored(event_id: str) -> dict:
    row = db.session.execute(select(_table).where(_table.c.event_id == event_id)).mappings().one()
    return {name: row[name] for name in EVENT_COLUMNS}


def _count_stored(events: list[dict]) -> int:
    ids = [event["event_id"] for event in events]
    return db.session.scalar(select(db.func.count()).where(_table.c.event_id.in_(ids)))


def _assert_refused_and_nothing_stored(app, events: list[dict], errors, match: str | None = None) -> None:
    with app.app_context():
        with pytest.raises(errors, match=match):
            with db.engine.begin() as connection:
                insert_events(connection, events)
        assert _count_stored(events) == 0


def _events(user_id: int) -> list[dict]:
    """Events that use every column and the awkward values: NULLs, no metadata, nested and non-ASCII metadata,
    quotes and backslashes, a multi-line stack trace, a timestamp with microseconds in another time zone."""
    when = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    return [
        build_event(ActionType.UPDATE, ResourceType.USER, 42, "admin renamed \"Zoë\" to 'Zoé' \\ 東京 ✓",
                    timestamp=when, user_id=user_id, username="admin",
                    metadata={"old": {"full_name": "Zoë"}, "new": {"full_name": "Zoé", "tags": ["a", 1, 2.5, True, None]},
                              "empty": {}, "quote": "\"'\\"},
                    ip_address="2001:db8::1", user_agent_="Mozilla/5.0 (X11) ✓", request_id_="r-1", is_sensitive=True),
        build_event(ActionType.EXCEPTION_RAISED, ResourceType.SYSTEM, None, "ZeroDivisionError: division by zero",
                    timestamp=datetime.now(UTC), status=Status.ERROR, severity=ErrorSeverity.ERROR,
                    error_type="ZeroDivisionError", stack_trace="Traceback (most recent call last):\n  File \"x.py\"\n",
                    fingerprint="f" * 64, http_method="GET", path="/boom?x=1", status_code=500, duration_ms=0),
        build_event(ActionType.REQUEST, ResourceType.REQUEST, None, "", timestamp=datetime.now(UTC), metadata=None),
    ]


@pytest.mark.parametrize("together", [True, False], ids=["in-one-statement", "one-by-one"])
def test_every_column_is_stored_as_given(app, make_user, together):
    """Several rows and a single row take different statements on PostgreSQL: both store the same."""
    events = _events(make_user("inserter"))
    with app.app_context():
        with db.engine.begin() as connection:
            for chunk in [events] if together else [[event] for event in events]:
                insert_events(connection, chunk)
        for event in events:
            stored = _stored(event["event_id"])
            assert stored == event
            # An event without metadata stores SQL NULL, not a JSON null: "has no metadata" filters rely on it.
            if event["metadata"] is None:
                assert db.session.scalar(select(_table.c["metadata"].is_(None))
                                         .where(_table.c.event_id == event["event_id"])) is True


def test_duplicates_are_skipped_only_when_asked(app, make_user):
    events = _events(make_user("dup"))
    with app.app_context():
        with db.engine.begin() as connection:
            insert_events(connection, events[:2])
        with db.engine.begin() as connection:
            insert_events(connection, events, ignore_duplicates=True)  # a replay of two of them, and one new
        assert _count_stored(events) == 3
        for chunk in (events[:1], events[:2]):
            with pytest.raises(sa_exc.IntegrityError):
                with db.engine.begin() as connection:
                    insert_events(connection, chunk)
        with db.engine.begin() as connection:
            insert_events(connection, events[:1], ignore_duplicates=True)
        assert _count_stored(events) == 3


@pytest.mark.parametrize("count", [1, 3])
def test_a_row_the_database_refuses_is_an_sqlalchemy_error_and_the_transaction_keeps_nothing(app, count):
    events = _events(user_id=987_654)[:count]  # no such user: the foreign key refuses the first row
    _assert_refused_and_nothing_stored(app, events, sa_exc.IntegrityError)


@pytest.mark.parametrize("count", [1, 3])
def test_a_naive_timestamp_is_refused_and_nothing_is_stored(app, count):
    """The server would read a time without an offset in its session's time zone: refused, as the column type
    refuses it on SQLite."""
    events = [{**event, "timestamp": datetime(2026, 1, 2, 3, 4, 5)} for event in _events(user_id=None)[:count]]
    _assert_refused_and_nothing_stored(app, events, (ValueError, sa_exc.StatementError), match="naive")


@pytest.mark.parametrize("count", [1, 2])
def test_an_event_without_the_keys_that_have_defaults_gets_the_defaults(app, count):
    """``description`` and ``is_sensitive`` have Python-side defaults: an event without them (an older spool
    line, a hand-made dict) is stored with the defaults, not refused for a NULL."""
    events = []
    for event in _events(user_id=None)[1:1 + count]:
        event = dict(event)
        del event["description"], event["is_sensitive"]
        events.append(event)
    with app.app_context():
        with db.engine.begin() as connection:
            insert_events(connection, events)
        for event in events:
            stored = _stored(event["event_id"])
            assert stored["description"] == "" and stored["is_sensitive"] is False
