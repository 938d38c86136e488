"""Building events: hostile or oversized input is stored safely, bounded, on one line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit_portal.audit.record import models
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event, single_line
from audit_portal.audit.write.service import log_audit, log_login_failed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _one_line(value: str) -> bool:
    return len(value.splitlines()) == 1 and not any(ch in value for ch in "\r\n\x00\x85\u2028")


def test_a_10kb_user_agent_is_bounded(client, audit_rows):
    response = client.post("/_test/probe", headers={"User-Agent": "A" * 10_240})
    assert response.status_code == 201
    [row] = audit_rows(action_type="REQUEST")
    assert len(row.user_agent) == models.USER_AGENT_MAX
    assert row.user_agent.startswith("AAAA") and row.user_agent.endswith("…[truncated]")


def test_control_characters_in_the_user_agent_cannot_forge_a_line(client, audit_rows):
    # The test client refuses newlines in headers; a raw WSGI environ is what a lax server could pass on.
    hostile = "Mozilla/5.0\r\nX-Injected: 1\x00\x85\u2028end"
    response = client.post("/_test/probe", environ_base={"HTTP_USER_AGENT": hostile})
    assert response.status_code == 201
    [row] = audit_rows(action_type="REQUEST")
    assert row.user_agent == "Mozilla/5.0\\x0d\\x0aX-Injected: 1\\x00\\x85\\u2028end"
    assert _one_line(row.user_agent)


def test_control_characters_in_username_and_description_are_escaped(app, audit_rows):
    with app.app_context():
        event_id = log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "a\nb", "line one\r\nFAKE: line two\x00",
                             username="eve\r\nadmin")
    [row] = audit_rows(event_id=event_id)
    assert row.description == "line one\\x0d\\x0aFAKE: line two\\x00"
    assert row.username == "eve\\x0d\\x0aadmin"
    assert row.resource_id == "a\\x0ab"
    assert all(_one_line(value) for value in (row.description, row.username, row.resource_id))


def test_a_failed_login_with_a_hostile_username_is_one_line(app, audit_rows):
    with app.app_context():
        event_id = log_login_failed("admin\n2026-01-01 LOGIN admin\x00", "unknown user")
    [row] = audit_rows(event_id=event_id)
    assert _one_line(row.description)
    assert row.description == "Failed login for 'admin\\x0a2026-01-01 LOGIN admin\\x00': unknown user"


def test_nul_and_broken_unicode_are_stored_not_refused(app, audit_rows):
    """PostgreSQL refuses NUL and lone surrogates in text and JSONB; the event is still stored."""
    with app.app_context():
        event_id = log_audit(None, ActionType.UPDATE, ResourceType.SETTING, None, "odd \ud800 text",
                             metadata={"name": "bob\x00", "bad\x00key": "\udfff"},
                             stack_trace="Traceback\nValueError: \x00 in input", path="/x\x00y")
    [row] = audit_rows(event_id=event_id)
    assert row.description == "odd \\ud800 text"
    assert row.event_metadata == {"name": "bob\\x00", "bad\\x00key": "\\udfff"}
    assert row.stack_trace == "Traceback\nValueError: \\x00 in input"  # line breaks of a trace are kept
    assert row.path == "/x\\x00y"


def test_build_event_bounds_every_text_field():
    event = build_event(
        ActionType.REQUEST, ResourceType.REQUEST, "r" * 100, "d" * 2000, timestamp=NOW, username="u" * 100,
        user_agent_="a" * 2000, ip_address="1" * 100, error_type="E" * 500, stack_trace="s" * 100_000,
        fingerprint="f" * 100, request_id_="q" * 100, http_method="M" * 20, path="/" + "p" * 5000,
    )
    limits = {"resource_id": 64, "description": models.DESCRIPTION_MAX, "username": models.USERNAME_SNAPSHOT_MAX,
              "user_agent": models.USER_AGENT_MAX, "ip_address": 45, "error_type": models.ERROR_TYPE_MAX,
              "stack_trace": models.STACK_TRACE_MAX, "fingerprint": 64, "request_id": 36, "http_method": 10,
              "path": models.PATH_MAX}
    assert {name: len(event[name]) for name in limits} == limits


@pytest.mark.parametrize(
    ("field", "value"),
    [("status_code", "200"), ("status_code", 10_000), ("duration_ms", 1.5), ("user_id", "7"), ("user_id", True)],
)
def test_build_event_refuses_values_a_column_cannot_hold(field, value):
    with pytest.raises(ValueError, match=field):
        build_event(ActionType.REQUEST, ResourceType.REQUEST, timestamp=NOW, **{field: value})


def test_build_event_refuses_a_naive_timestamp():
    with pytest.raises(ValueError, match="timezone-aware"):
        build_event(ActionType.LOGIN, ResourceType.SESSION, timestamp=datetime(2026, 1, 1))


def test_build_event_names_the_allowed_values_of_an_unknown_enum():
    with pytest.raises(ValueError, match="must be one of: LOGIN, LOGOUT"):
        build_event("TELEPORT", ResourceType.SESSION, timestamp=NOW)


def test_a_huge_duration_is_clamped():
    assert build_event(ActionType.REQUEST, ResourceType.REQUEST, timestamp=NOW, duration_ms=10**12)["duration_ms"] == 2**31 - 1


def test_single_line_keeps_ordinary_unicode():
    assert single_line("Zoë Ångström — 東京", 100) == "Zoë Ångström — 東京"


def test_event_ids_are_uuid7_in_time_order(monkeypatch):
    import time as time_module
    import uuid

    from audit_portal.audit.record.events import new_event_id

    clock = iter([1_800_000_000_000_000_000, 1_800_000_000_001_000_000, 1_800_000_000_002_000_000])
    monkeypatch.setattr(time_module, "time_ns", lambda: next(clock))
    ids = [new_event_id() for _ in range(3)]
    parsed = [uuid.UUID(value) for value in ids]
    assert [str(p) for p in parsed] == ids  # the standard form: lower-case hex, hyphens at 8-4-4-4-12
    assert [p.version for p in parsed] == [7, 7, 7]
    assert all(p.variant == uuid.RFC_4122 for p in parsed)
    assert ids == sorted(ids)  # later events sort later: the unique index grows at its right edge
    assert parsed[0].int >> 80 == 1_800_000_000_000  # the first 48 bits are the time in milliseconds
    monkeypatch.undo()
    many = {new_event_id() for _ in range(10_000)}
    assert len(many) == 10_000


def test_metadata_of_any_python_values_is_stored_as_plain_json(app, audit_rows):
    import decimal
    import json

    class Widget:
        def __repr__(self):
            return "<Widget token=abc123>"

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    metadata = {"when": when, "tags": {"a"}, "pair": (1, 2), "price": decimal.Decimal("1.50"), "widget": Widget(),
                "ratio": float("nan"), 7: "seven", "nested": {"password": "hunter2", "ok": [None, True, 2.5]}}
    event = build_event(ActionType.UPDATE, ResourceType.SETTING, "s1", "changed", timestamp=when, metadata=metadata)
    stored = event["metadata"]
    assert json.loads(json.dumps(stored)) == stored  # only JSON types are left
    assert stored["pair"] == [1, 2] and stored["tags"] == ["a"] and stored["7"] == "seven"
    assert stored["ratio"] == "nan" and stored["nested"] == {"password": "[REDACTED]", "ok": [None, True, 2.5]}
    assert "abc123" not in json.dumps(stored)  # a secret inside a repr is redacted too
    with app.app_context():
        log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "s1", "changed", metadata=metadata)
    [row] = audit_rows(action_type="UPDATE")
    assert row.event_metadata["nested"]["password"] == "[REDACTED]" and row.event_metadata["pair"] == [1, 2]
