"""``audit_portal/audit/streams/formats.py`` and the syslog framing in ``transports.py``: ECS field names, types
and allowed values; CEF escaping with hostile values; RFC 5424 messages and their size bound."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.streams import formats
from audit_portal.audit.streams.transports import syslog_message

#: ECS 8.x: event.category's allowed values, and the event.type values each category expects.
ECS_EXPECTED_TYPES = {
    "api": {"access", "admin", "allowed", "change", "creation", "deletion", "denied", "end", "info", "start", "user"},
    "authentication": {"start", "end", "info"},
    "configuration": {"access", "change", "creation", "deletion", "info"},
    "database": {"access", "change", "info", "error"},
    "host": {"access", "change", "end", "info", "start"},
    "iam": {"admin", "change", "creation", "deletion", "group", "info", "user"},
    "intrusion_detection": {"allowed", "denied", "info"},
    "session": {"start", "end", "info"},
    "web": {"access", "error", "info"},
}
HOSTILE = 'a|b\\c=d\ne\rf "quoted" Grüße 東京 🚀 |=\\'


def log_of(action=ActionType.LOGIN, resource=ResourceType.SESSION, **fields) -> AuditLog:
    event = build_event(action, resource, fields.pop("resource_id", None), fields.pop("description", "something"),
                        timestamp=datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC), **fields)
    return AuditLog(id=1, **{k: v for k, v in event.items() if k != "metadata"}, event_metadata=event["metadata"])


@pytest.mark.parametrize("action", list(ActionType))
@pytest.mark.parametrize("resource", [ResourceType.USER, ResourceType.SETTING])
def test_every_action_maps_to_ecs_allowed_categories_and_expected_types(action, resource):
    categories, types = formats.ecs_kind(action.value, resource.value)
    assert categories and set(categories) <= set(ECS_EXPECTED_TYPES)
    expected = set().union(*(ECS_EXPECTED_TYPES[c] for c in categories))
    assert set(types) <= expected, (action, categories, types)


def test_an_error_event_as_ecs_has_the_documented_names_and_types():
    log = log_of(ActionType.EXCEPTION_RAISED, ResourceType.SYSTEM, status=Status.ERROR, severity="CRITICAL",
                 error_type="MemoryError", stack_trace="Traceback...\nMemoryError", user_id=7, username="alice",
                 ip_address="203.0.113.9", user_agent_="curl/8", http_method="POST", path="/admin/x?q=1",
                 status_code=500, duration_ms=12, request_id_="01936f4e-8b77-7c21-a4d9-3e5f7a9b1c2d",
                 metadata={"message": "out of memory"})
    doc = json.loads(formats.to_ecs(log))
    assert doc["@timestamp"] == "2026-12-01T10:00:00.123456Z"
    assert doc["event"]["id"] == log.event_id and doc["event"]["action"] == "exception_raised"
    assert doc["event"]["category"] == ["web"] and doc["event"]["type"] == ["error"]
    assert doc["event"]["outcome"] == "failure" and doc["event"]["kind"] == "event"
    assert doc["event"]["duration"] == 12_000_000 and isinstance(doc["event"]["severity"], int)
    assert doc["user"] == {"id": "7", "name": "alice"}  # ECS user.id is a keyword: a string
    assert doc["source"]["ip"] == "203.0.113.9" and doc["user_agent"]["original"] == "curl/8"
    assert doc["url"] == {"path": "/admin/x", "query": "q=1"}
    assert doc["http"] == {"request": {"method": "POST"}, "response": {"status_code": 500}}
    assert doc["error"] == {"type": "MemoryError", "message": "out of memory",
                            "stack_trace": "Traceback...\nMemoryError"}
    assert doc["trace"]["id"] == log.request_id and doc["log"]["level"] == "critical"
    assert doc["ecs"]["version"].startswith("8.")


def test_a_failed_logins_attempted_name_goes_into_ecs_user_name_and_cef_suser_as_typed():
    log = log_of(ActionType.LOGIN_FAILED, status=Status.FAILURE, metadata={"attempted_username": HOSTILE})
    doc = json.loads(formats.to_ecs(log))
    assert doc["user"]["name"] == HOSTILE and doc["event"]["outcome"] == "failure"
    assert doc["event"]["category"] == ["authentication"]
    suser = re.search(r"suser=(.*?) (?=\w+=)", formats.to_cef(log)).group(1)
    assert unescape_cef_value(suser) == HOSTILE


def unescape_cef_value(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), text)


def split_cef_header(line: str) -> list[str]:
    """The 7 header fields and the extension, splitting on pipes that are not escaped."""
    parts, current, escaped = [], "", False
    for char in line:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char == "|" and len(parts) < 7:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def test_cef_escapes_hostile_values_in_header_and_extension():
    log = log_of(ActionType.UPDATE, ResourceType.SETTING, resource_id="x", description=HOSTILE, status=Status.FAILURE,
                 user_agent_=HOSTILE, ip_address="2001:db8::1")
    line = formats.to_cef(log)
    assert "\n" not in line and "\r" not in line
    fields = split_cef_header(line)
    assert len(fields) == 8 and fields[0] == "CEF:0" and fields[4] == "UPDATE" and fields[6] == "5"
    # The header: | and \ escaped (the stored description has its line breaks escaped already, as \x0a).
    assert re.sub(r"\\(.)", r"\1", fields[5]) == log.description
    assert formats.cef_header(HOSTILE) == 'a\\|b\\\\c=d e f "quoted" Grüße 東京 🚀 \\|=\\\\'
    extension = fields[7]
    pairs = dict(re.findall(r"(\w+)=((?:\\.|[^\\])*?)(?= \w+=|$)", extension))
    assert unescape_cef_value(pairs["msg"]) == log.description
    assert unescape_cef_value(pairs["requestClientApplication"]) == log.user_agent
    assert pairs["c6a2"] == "2001:db8::1" and "src" not in pairs
    assert pairs["externalId"] == log.event_id and pairs["outcome"] == "failure"
    assert re.search(r"(?<!\\)=", pairs["msg"]) is None  # every = in a value is escaped


@pytest.mark.parametrize("status, severity, expected", [
    (Status.SUCCESS, None, 3), (Status.FAILURE, None, 5), (Status.ERROR, "WARNING", 4), (Status.ERROR, "ERROR", 7),
    (Status.ERROR, "CRITICAL", 10)])
def test_cef_severity_is_0_to_10(status, severity, expected):
    assert formats.cef_severity(log_of(status=status, severity=severity)) == expected


RFC5424 = re.compile(r'^(?P<len>\d+) <(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) audit_portal - (?P<msgid>\S+) '
                     r'\[audit_portal@32473 event_id="(?P<event_id>[^"]+)" category="(?P<category>[^"]+)"\] (?P<msg>.*)$',
                     re.S)


def test_a_syslog_message_is_rfc_5424_framed_by_octet_counting():
    log = log_of(ActionType.LOGIN_FAILED, status=Status.FAILURE)
    framed = syslog_message(log, formats.to_json(log), 65_536)
    match = RFC5424.match(framed.decode())
    assert match, framed
    assert int(match["len"]) == len(framed) - len(match["len"]) - 1
    assert int(match["pri"]) == 13 * 8 + 5  # facility "log audit", severity notice for a refusal
    assert match["ts"] == "2026-12-01T10:00:00.123456Z" and match["event_id"] == log.event_id
    assert json.loads(match["msg"])["event_id"] == log.event_id


def test_a_syslog_message_over_the_limit_is_cut_with_a_marker():
    log = log_of(description="é" * 900)
    framed = syslog_message(log, "x" * 3000 + "é" * 500, 1024)
    length, _, message = framed.partition(b" ")
    assert int(length) == len(message) <= 1024
    text = message.decode()  # still valid UTF-8
    assert re.search(r"…\[truncated: the event had \d+ bytes, more than STREAM_SYSLOG_MAX_BYTES\]$", text)
    assert RFC5424.match(framed.decode())


def test_the_json_format_is_exactly_the_api_item():
    """``formats.item`` builds the item directly (for speed): it must stay equal to the API's schema."""
    from audit_portal.audit.demo.seed import generate
    from audit_portal.audit.read.schemas import AuditLogSchema

    schema = AuditLogSchema()
    for i, event in enumerate(generate(300, [(7, "alice"), (None, None)], seed=1)):
        log = AuditLog(id=i + 1, **{k: v for k, v in event.items() if k != "metadata"}, event_metadata=event["metadata"])
        assert formats.item(log) == schema.dump(log)
        assert json.loads(formats.to_json(log)) == json.loads(json.dumps(schema.dump(log)))


def test_erased_personal_fields_read_erased_in_every_format():
    """As on the pages and in the exports: a username and user agent an erasure removed read "[erased]"; an erased
    address is left out of the typed address fields (ECS ``source.ip``, CEF ``src``), and ECS names what was erased."""
    from sqlalchemy.orm.attributes import set_committed_value

    from audit_portal.audit.record.models import ErasedFields

    log = log_of(ActionType.LOGIN, description="[erased] logged in")
    log.username = log.ip_address = log.user_agent = None  # as the erasure left them
    set_committed_value(log, "erasure", ErasedFields(audit_log_id=1, erased={
        "username": "c" * 64, "ip_address": "d" * 64, "user_agent": "e" * 64}))
    never = log_of(ActionType.LOGIN, description="someone logged in")  # NULLs no erasure made stay empty
    never.username = never.ip_address = never.user_agent = None

    item = json.loads(formats.to_json(log))
    assert (item["username"], item["ip_address"], item["user_agent"]) == ("[erased]",) * 3
    assert (item["username"], item["ip_address"]) != (None, None)
    assert json.loads(formats.to_json(never))["username"] is None

    doc = json.loads(formats.to_ecs(log))
    assert doc["user"]["name"] == "[erased]" and doc["user_agent"]["original"] == "[erased]"
    assert "source" not in doc and doc["audit_portal"]["erased"] == ["ip_address", "user_agent", "username"]
    plain = json.loads(formats.to_ecs(never))
    assert "user" not in plain and "erased" not in plain["audit_portal"]

    cef = formats.to_cef(log)
    assert "suser=[erased]" in cef and "requestClientApplication=[erased]" in cef and " src=" not in cef
    assert "suser=" not in formats.to_cef(never)
