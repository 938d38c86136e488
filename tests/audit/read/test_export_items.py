"""JSON and NDJSON exports written by PostgreSQL are byte for byte what the Python path (the API schema and
``json.dumps``) writes, on the values most likely to tell them apart."""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from audit_portal.audit.read import export_items
from audit_portal.audit.read.export import item_chunks
from audit_portal.audit.read.query import AuditFilters
from audit_portal.audit.record import partitions
from audit_portal.audit.record.enums import ActionType, ErrorSeverity, ResourceType, Status, category_for
from audit_portal.extensions import db

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                       reason="the database writes the items on PostgreSQL only: set TEST_DATABASE_URL"),
]

#: Every character JSON escapes, and some it must not (DEL, U+2028/9, non-BMP), with quotes and backslashes.
CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f"
AWKWARD = [
    "plain", "", "Grüße, 東京 🚀 \U0001f9d1\u200d\U0001f4bb", 'quote " and \\ backslash \\" \\\\', CONTROL,
    "\u2028line\u2029separators", "\\u0041 is not A", '", "metadata": null, "status": "x', "tab\there\r\nnew",
    "=1+2", "'single'", "null", "ends with a backslash \\",
]
T0 = datetime(2026, 11, 30, 14, 5, 9, 412318, tzinfo=UTC)
#: Metadata as text, some of it written by hand as another client might (jsonb keeps 1.50 and 1.00 as written).
METADATA = [
    None, "null", "{}", '{"b": 1, "a": 2, "aa": {"z": [], "y": {}}}', '{"old": {"note": "x"}, "new": {"note": "y"}}',
    json.dumps({"big": 2**63, "bigger": 10**30, "negative": -(10**25), "zero": 0}),
    json.dumps({"float": 1.5, "small": 1e-05, "large": 1e16, "third": 1 / 3, "whole": 100.0, "neg": -0.0}),
    '{"hand": 1.50, "one": 1.00, "exp": 2e-7, "int_like": 1e3}',
    json.dumps({"text": AWKWARD, "nested": {"deeper": [{"k": "v", "n": None, "t": True, "f": False}]}},
               ensure_ascii=False),
    json.dumps({"status": "inside metadata", ", \"status\": ": ", \"status\": ", "ip": "10.0.0.1", "v": "1.5"}),
    '[["pairs", "become a dict"]]',
]


def _row(i: int, **fields) -> dict:
    action = fields.pop("action_type", ActionType.UPDATE.value)
    resource = fields.pop("resource_type", ResourceType.USER.value)
    row = {"event_id": str(uuid.uuid4()), "timestamp": T0 - timedelta(seconds=i), "user_id": None, "username": None,
           "action_type": action, "resource_type": resource, "resource_id": None,
           "category": category_for(action, resource).value, "description": f"event {i}", "metadata": None,
           "ip_address": None, "user_agent": None, "status": Status.SUCCESS.value, "is_sensitive": False,
           "severity": None, "error_type": None, "stack_trace": None, "fingerprint": None, "request_id": None,
           "http_method": None, "path": None, "status_code": None, "duration_ms": None}
    row.update(fields)
    return row


def _fixed_rows(user_id: int) -> list[dict]:
    rows = [_row(0, timestamp=T0.replace(microsecond=0)), _row(1, timestamp=T0.replace(microsecond=1)),
            _row(2, timestamp=T0.replace(microsecond=100000), user_id=user_id, username=None, description=""),
            _row(3, user_id=user_id, username="alice", description="alice did it"),
            _row(4, username="", user_id=None, description="", action_type=ActionType.LOGIN_FAILED.value,
                 resource_type=ResourceType.SESSION.value, status=Status.FAILURE.value),
            _row(5, username="ghost", description="ghost left"),  # a deleted user's event: the name stays
            _row(6, status="UNKNOWN", severity="", is_sensitive=True),
            _row(7, status_code=500, duration_ms=2**31 - 1, http_method="POST", path="/a\"b\\c?d=é",
                 request_id=str(uuid.uuid4()), ip_address="2001:db8::1", user_agent=CONTROL)]
    for j, severity in enumerate([*ErrorSeverity.values(), "BOGUS"]):
        rows.append(_row(10 + j, status=Status.ERROR.value, severity=severity, error_type="ZeroDivisionError",
                         stack_trace="Traceback:\n  File \"x.py\"\n\tZeroDivisionError: \\ NUL-free",
                         fingerprint="5b0f7e2c9a1d4e8f3b6a0c2d7e9f1a4b", action_type=ActionType.EXCEPTION_RAISED.value,
                         resource_type=ResourceType.SYSTEM.value))
    for j, value in enumerate(AWKWARD):
        rows.append(_row(20 + j, description=value, username=value or None, resource_id=value[:64],
                         user_agent=value, error_type=value, path=value, user_id=user_id if j % 2 else None))
    for j, metadata in enumerate(METADATA):
        rows.append(_row(40 + j, metadata=metadata))
    return rows


def _random_rows(count: int) -> list[dict]:
    """Random text over an awkward alphabet, and random metadata: integers only in half the rows, floats of
    every magnitude too in the others."""
    rng = random.Random(20)
    alphabet = CONTROL + "\"\\/ aZ09é東🚀\u2028.:,{}[]"

    def word():
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))

    def number(floats):
        if not floats:
            return rng.randint(-10**20, 10**20)
        return rng.choice([rng.randint(-10**20, 10**20), rng.random() * 10 ** rng.randint(-8, 18),
                           -rng.random() * 10 ** rng.randint(-8, 18), float(rng.randint(0, 10**6)),
                           round(rng.random(), 3)])

    def value(floats, depth=0):
        kind = rng.randrange(5 if depth < 3 else 3)
        return [word, lambda: number(floats), lambda: rng.choice([True, False, None]),
                lambda: {word(): value(floats, depth + 1) for _ in range(rng.randint(0, 4))},
                lambda: [value(floats, depth + 1) for _ in range(rng.randint(0, 4))]][kind]()

    return [_row(100 + i, description=word(), username=word() or None, user_agent=word(),
                 metadata=json.dumps({word(): value(i % 2 == 0) for _ in range(rng.randint(0, 5))},
                                     ensure_ascii=False))
            for i in range(count)]


@pytest.fixture
def awkward_events(app, make_user):
    user_id = make_user("alice")
    rows = _fixed_rows(user_id) + _random_rows(300)
    columns = list(rows[0])
    values = ", ".join("CAST(:metadata AS jsonb)" if c == "metadata" else f":{c}" for c in columns)
    with app.app_context(), db.engine.begin() as conn:
        partitions.ensure_for_events(conn, rows)  # a week old: last month's partition, on PostgreSQL
        conn.execute(text(f"INSERT INTO audit_logs ({', '.join(columns)}) VALUES ({values})"), rows)  # noqa: S608
    return rows


def _export(app, fmt: str, *, in_python: bool) -> bytes:
    with app.app_context():
        return "".join(item_chunks(AuditFilters(), fmt, in_python=in_python)).encode()


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_the_database_writes_the_bytes_python_writes(app, awkward_events, monkeypatch, fmt):
    reprinted = []
    python_metadata = export_items._python_metadata
    monkeypatch.setattr(export_items, "_python_metadata", lambda t: reprinted.append(t) or python_metadata(t))

    from_database = _export(app, fmt, in_python=False)
    from_python = _export(app, fmt, in_python=True)

    assert from_database == from_python
    items = json.loads(from_database) if fmt == "json" else [json.loads(line) for line in from_database.splitlines()]
    assert len(items) >= len(awkward_events)  # and the events of making the user
    # The database wrote the items; Python reprinted only the metadata with a "." in a number (or a string), and
    # the one that is not an object.
    with app.app_context():
        with_dots = db.session.scalar(text("SELECT count(*) FROM audit_logs WHERE strpos(metadata::text, '.') > 0 "
                                           "OR jsonb_typeof(metadata) NOT IN ('object', 'null')"))
    assert len(reprinted) <= with_dots < len(items) * 0.75
    assert '[["pairs", "become a dict"]]' in reprinted and any('"hand": 1.50' in t for t in reprinted)
    assert all("." in t or not t.startswith("{") for t in reprinted)
    assert {"pairs": "become a dict"} in [item["metadata"] for item in items]


def test_timestamps_colours_and_actors_read_as_python_prints_them(app, awkward_events):
    items = {item["event_id"]: item for item in json.loads(_export(app, "json", in_python=False))}
    whole_second, one_microsecond, user_without_name, named, anonymous, ghost, unknown = (
        items[row["event_id"]] for row in awkward_events[:7])
    assert whole_second["timestamp"] == "2026-11-30T14:05:09+00:00"
    assert one_microsecond["timestamp"] == "2026-11-30T14:05:09.000001+00:00"
    assert user_without_name["readable_description"] == f"user #{user_without_name['user_id']}: UPDATE on USER"
    assert (named["actor"], named["readable_description"]) == ("alice", "alice did it")
    assert anonymous["readable_description"] == "anonymous: LOGIN_FAILED on SESSION"
    assert (ghost["actor"], ghost["user_id"]) == ("ghost", None)
    assert (unknown["status_color"], unknown["severity_color"], unknown["is_sensitive"]) == ("grey", None, True)


def test_an_empty_export_is_an_empty_array_or_nothing(app):
    assert _export(app, "json", in_python=False) == _export(app, "json", in_python=True) == b"[\n]\n"
    assert _export(app, "ndjson", in_python=False) == b""
