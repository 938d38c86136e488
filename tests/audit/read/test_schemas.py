"""The filter schema every list, export and viewer shares, and the event schemas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from marshmallow import ValidationError

from audit_portal.audit.read.query import AuditFilters
from audit_portal.audit.read.schemas import AuditLogCreateSchema, AuditLogFilterSchema, AuditLogSchema
from audit_portal.audit.record.enums import ActionType, Category, ErrorSeverity, ResourceType, Status
from audit_portal.audit.record.models import USERNAME_SNAPSHOT_MAX, AuditLog


def _errors(params: dict, schema=AuditLogFilterSchema) -> dict:
    with pytest.raises(ValidationError) as info:
        schema().load(params)
    return info.value.messages


def test_no_filters_is_everything():
    assert AuditLogFilterSchema().load({}) == AuditFilters()


def test_enum_values_are_accepted_in_any_case():
    filters = AuditLogFilterSchema().load({"action_type": "login", "resource_type": "User", "status": "failure",
                                           "category": "SECURITY", "severity": "Warning"})
    assert (filters.action_type, filters.resource_type, filters.status, filters.category, filters.severity) == (
        "LOGIN", "USER", "FAILURE", "security", "WARNING")


@pytest.mark.parametrize(
    ("field", "enum"),
    [("action_type", ActionType), ("resource_type", ResourceType), ("status", Status), ("category", Category),
     ("severity", ErrorSeverity)],
)
def test_a_bad_enum_value_names_the_parameter_and_the_allowed_values(field, enum):
    errors = _errors({field: "bogus"})
    assert errors == {field: [f"Unknown value 'bogus'; must be one of: {', '.join(enum.values())}."]}


def test_every_filter_is_parsed():
    filters = AuditLogFilterSchema().load({
        "date_from": "2026-01-01", "date_to": "2026-01-31", "user_id": "7", "action_type": "UPDATE",
        "resource_type": "USER", "status": "SUCCESS", "category": "user_management", "severity": "ERROR",
        "error_type": "ValueError", "search": "bob", "ip_address": "203.0.113.24", "username": "bob",
    })
    assert filters == AuditFilters(
        date_from=datetime(2026, 1, 1, tzinfo=UTC), date_to=datetime(2026, 2, 1, tzinfo=UTC), user_id=7,
        action_type="UPDATE", resource_type="USER", status="SUCCESS", category="user_management", severity="ERROR",
        error_type="ValueError", search="bob", ip_address="203.0.113.24", username="bob",
    )


def test_a_date_alone_means_the_whole_day():
    filters = AuditLogFilterSchema().load({"date_from": "2026-02-28", "date_to": "2026-02-28"})
    assert filters.date_from == datetime(2026, 2, 28, tzinfo=UTC)
    assert filters.date_to == datetime(2026, 3, 1, tzinfo=UTC)  # exclusive: the next midnight


def test_datetimes_are_converted_to_utc_and_naive_ones_taken_as_utc():
    filters = AuditLogFilterSchema().load({"date_from": "2026-02-28T10:00:00+02:00", "date_to": "2026-02-28T12:00:00"})
    assert filters.date_from == datetime(2026, 2, 28, 8, tzinfo=UTC)
    assert filters.date_to == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert AuditLogFilterSchema().load({"date_from": "2026-02-28T10:00:00Z"}).date_from == datetime(2026, 2, 28, 10,
                                                                                                      tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30", "2026-13-01T00:00:00", "28/02/2026", "", "2026-02-28T25:00"])
def test_a_malformed_date_is_refused_with_an_example(value):
    [message] = _errors({"date_from": value})["date_from"]
    assert "Not a valid ISO 8601 date or datetime" in message and "2026-01-31" in message


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01T00:00:00+01:00"])
def test_a_date_out_of_range_is_refused_not_a_crash(value):
    errors = _errors({"date_to": value})
    assert "out of range" in errors["date_to"][0]


def test_date_from_after_date_to_is_refused():
    assert _errors({"date_from": "2026-03-01", "date_to": "2026-02-01"}) == {
        "date_from": ["date_from must be before date_to."]}


def test_an_unknown_parameter_is_refused():
    assert _errors({"status": "SUCCESS", "colour": "red"}) == {
        "colour": ["Unknown parameter; the parameters are: " + ", ".join(AuditFilters.names()) + "."]}


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5", str(2**63)])
def test_user_id_must_be_a_positive_integer(value):
    assert "user_id" in _errors({"user_id": value})


def test_search_is_bounded():
    assert "search" in _errors({"search": "x" * 201})


@pytest.mark.parametrize(("given", "loaded"), [
    ("203.0.113.24", "203.0.113.24"),
    ("2001:DB8:0:0::1", "2001:db8::1"),  # the canonical text events store
    ("2001:0db8:0000:0000:0000:0000:0000:0017", "2001:db8::17"),
    ("::FFFF:192.0.2.9", "::ffff:192.0.2.9"),  # IPv4-mapped, as a dual-stack server writes it
    (" 192.0.2.9 ", "192.0.2.9"),
])
def test_an_ip_address_is_loaded_in_the_form_events_store(given, loaded):
    assert AuditLogFilterSchema().load({"ip_address": given}).ip_address == loaded


@pytest.mark.parametrize("value", ["", "256.0.0.1", "10.0.0", "010.0.0.1", "192.0.2.0/24", "localhost",
                                   "2001:db8::1::2"])
def test_a_bad_ip_address_is_refused_naming_it(value):
    [message] = _errors({"ip_address": value})["ip_address"]
    assert message.startswith("Not a valid IPv4 or IPv6 address") and "2001:db8::1" in message
    assert _errors({"ip_address": "fe80::1%eth\x00"}) == {"ip_address": ["Must not contain a NUL character (\\x00)."]}


def test_a_username_is_taken_as_typed_up_to_the_columns_length():
    assert AuditLogFilterSchema().load({"username": "Alice.O'Neil"}).username == "Alice.O'Neil"
    assert AuditLogFilterSchema().load({"username": "x" * USERNAME_SNAPSHOT_MAX}).username == "x" * USERNAME_SNAPSHOT_MAX
    assert _errors({"username": ""}) == _errors({"username": "x" * (USERNAME_SNAPSHOT_MAX + 1)}) == {
        "username": [f"Length must be between 1 and {USERNAME_SNAPSHOT_MAX}."]}
    assert _errors({"username": "ad\x00min"}) == {"username": ["Must not contain a NUL character (\\x00)."]}


# -- event schemas -----------------------------------------------------------------------------


def test_create_schema_refuses_unknown_enums_and_over_long_fields():
    errors = _errors({"action_type": "TELEPORT", "resource_type": "USER", "description": "d" * 1001}, AuditLogCreateSchema)
    assert set(errors) == {"action_type", "description"}
    assert "must be one of: LOGIN" in errors["action_type"][0]


def test_create_schema_fills_defaults():
    loaded = AuditLogCreateSchema().load({"action_type": "update", "resource_type": "setting"})
    assert loaded == {"action_type": "UPDATE", "resource_type": "SETTING", "description": "", "status": "SUCCESS",
                      "is_sensitive": False}


def test_a_response_item_carries_the_ui_helpers():
    log = AuditLog(id=3, event_id="e", timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), user_id=7, username="bob",
                   action_type="EXCEPTION_RAISED", resource_type="SYSTEM", category="errors", status="ERROR",
                   severity="CRITICAL", description="MemoryError: ", event_metadata={"location": "x.py:f"})
    item = AuditLogSchema().dump(log)
    assert item["metadata"] == {"location": "x.py:f"} and item["timestamp"] == "2026-01-02T03:04:05+00:00"
    assert (item["status_color"], item["severity_color"], item["actor"]) == ("orange", "red", "bob")
    assert item["readable_description"] == "bob: MemoryError: "
    assert item["category"] == "errors"
