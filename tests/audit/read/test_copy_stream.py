"""PostgreSQL's COPY, read from a thread: every row once and in order, the rows of the moment it was asked for,
errors raised to the reader, and a reader that stops early stops the COPY and leaves no transaction behind."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from psycopg2.errors import DataError
from sqlalchemy import Text, cast, func, literal, select, text

from audit_portal.audit.read.copy_stream import CopyStream
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="COPY is PostgreSQL's: set TEST_DATABASE_URL"),
]


def _numbers(count: int):
    """One text column: "1", "2", ..."""
    n = func.generate_series(1, count).table_valued("n").render_derived()
    return select(cast(n.c.n, Text).label("v")).order_by(n.c.n)


def _in_transaction() -> list[str]:
    """The other connections to the database inside a transaction (a new transaction each time: pg_stat_activity
    is read once per transaction)."""
    with db.engine.connect() as conn:
        return list(conn.scalars(text(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (state LIKE 'idle in transaction%' OR state = 'active')")))


def test_every_row_once_in_order_in_batches(app):
    with app.app_context(), db.engine.connect() as conn:
        stream = CopyStream(conn, _numbers(4500), 2000)
        batches = list(stream)
        stream.close()
    assert [len(batch) for batch in batches] == [2000, 2000, 500]
    assert [int(v) for batch in batches for v in batch] == list(range(1, 4501))


def test_values_come_as_stored(app):
    awkward = "tab\t newline\n backslash\\ quote\" \x01 \u2028 🚀 é"
    with app.app_context(), db.engine.connect() as conn:
        stream = CopyStream(conn, select(literal(awkward, Text)).union_all(select(literal("", Text))), 10)
        assert list(stream) == [[awkward, ""]]
    with app.app_context(), db.engine.connect() as conn:  # nothing at all
        assert list(CopyStream(conn, select(literal("x", Text)).where(literal(False)), 10)) == []


def test_the_rows_are_those_of_the_moment_it_was_asked_for(app, monkeypatch):
    copy = CopyStream._copy
    monkeypatch.setattr(CopyStream, "_copy", lambda self, *args: time.sleep(0.5) or copy(self, *args))  # a slow start
    event = build_event(ActionType.LOGIN, ResourceType.SESSION, None, "written after the export began",
                        timestamp=utcnow())
    query = select(db.metadata.tables["audit_logs"].c.event_id)
    with app.app_context(), db.engine.connect() as conn:
        stream = CopyStream(conn, query, 10)
        with db.engine.begin() as other:
            insert_ignoring_duplicates(other, [event])
        assert event["event_id"] not in [v for batch in stream for v in batch]
        stream.close()
        with db.engine.connect() as later:
            assert later.scalar(query.where(query.selected_columns[0] == event["event_id"])) == event["event_id"]


def test_an_error_reaches_the_reader(app):
    failing = text("SELECT (1 / (n - 3))::text FROM generate_series(1, 5) AS n")  # fails on the third row
    with app.app_context(), db.engine.connect() as conn:
        stream = CopyStream(conn, failing, 1)
        with pytest.raises(DataError, match="division by zero"):
            list(stream)
        stream.close()


def test_a_reader_that_stops_early_stops_the_copy(app):
    with app.app_context():
        conn = db.engine.connect()
        stream = CopyStream(conn, _numbers(200_000), 1000)
        first = next(iter(stream))
        assert first[0] == "1"
        assert _in_transaction(), "the COPY is not running: this test would prove nothing"
        stream.close()
        conn.close()
        assert not stream._thread.is_alive()
        deadline = time.monotonic() + 3  # the server notices the closed connection within moments
        while (states := _in_transaction()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert states == []
        with db.engine.connect() as again:  # the pool still serves good connections
            assert again.scalar(select(literal(str(uuid.uuid4()), Text))) is not None


def test_closing_stops_a_query_still_working_on_its_next_row(app):
    # 100 kB the server sends at once (it sends in 8 kB pieces), then a row that takes a minute.
    slow = text("SELECT CASE WHEN n <= 1000 THEN repeat('x', 100) ELSE pg_sleep(60)::text END "
                "FROM generate_series(1, 1001) AS n")
    with app.app_context():
        conn = db.engine.connect()
        stream = CopyStream(conn, slow, 10)
        assert next(iter(stream)) == ["x" * 100] * 10
        stream.close()
        conn.close()
        deadline = time.monotonic() + 3  # not a minute
        while (states := _in_transaction()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert states == []


def _plan_nodes(conn, query) -> set[str]:
    compiled = query.compile(dialect=conn.dialect)
    plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()

    def nodes(node):
        yield node["Node Type"]
        for child in node.get("Plans", []):
            yield from nodes(child)

    return set(nodes(plan[0]["Plan"]))


@pytest.mark.parametrize("sort", [False, True])
def test_a_large_result_is_planned_as_a_cursor_in_index_order(app, sort):
    logs = db.metadata.tables["audit_logs"]
    query = select(logs.c.event_id).order_by(logs.c.timestamp.desc(), logs.c.id.desc())
    with app.app_context(), db.engine.connect() as conn:
        CopyStream(conn, query, 10, sort=sort)  # not read: its settings hold in the transaction it began
        nodes = _plan_nodes(conn, query)
    assert not nodes & {"Gather", "Gather Merge"}
    assert ("Sort" in nodes) is sort  # the table is empty: a sort costs nothing, unless it is forbidden
