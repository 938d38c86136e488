"""log_audit, its helpers and the @audit_log decorator: what ends up in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask_login import login_user
from marshmallow import ValidationError as MarshmallowValidationError
from wtforms.validators import ValidationError as WTFormsValidationError

from audit_portal.audit.record.enums import ActionType, ErrorSeverity, ResourceType, Status
from audit_portal.audit.write.service import (
    audit_log,
    log_admin_action,
    log_audit,
    log_error,
    log_login,
    log_login_failed,
    log_logout,
    log_user_action,
)
from audit_portal.extensions import db
from audit_portal.users.models import User

CANARY = "canary-Pw-7f3a9c1e"


def _user(user_id: int) -> User:
    return db.session.get(User, user_id)


def _row_text(row) -> str:
    return " ".join(str(getattr(row, column.key)) for column in row.__mapper__.column_attrs)


# -- log_audit -------------------------------------------------------------------------------


def test_minimal_event_outside_a_request(app, audit_rows):
    before = datetime.now(UTC)
    with app.app_context():
        event_id = log_audit(None, ActionType.CREATE, ResourceType.SETTING, None, "Created the theme setting")
    [row] = audit_rows(event_id=event_id)
    assert (row.action_type, row.resource_type, row.category) == ("CREATE", "SETTING", "data")
    assert row.description == "Created the theme setting"
    assert row.status == Status.SUCCESS.value and row.is_sensitive is False
    assert row.user_id is row.username is row.ip_address is row.user_agent is row.request_id is None
    assert row.resource_id is None and row.event_metadata is None
    assert row.severity is row.error_type is row.stack_trace is row.fingerprint is None
    assert row.http_method is row.path is row.status_code is row.duration_ms is None
    assert row.timestamp.tzinfo is not None
    assert before - timedelta(seconds=1) <= row.timestamp <= datetime.now(UTC) + timedelta(seconds=1)


def test_every_optional_field_is_stored(app, audit_rows, admin_id):
    with app.app_context():
        event_id = log_audit(
            admin_id, ActionType.UPDATE, ResourceType.SETTING, 42, "Changed the theme",
            metadata={"old": {"theme": "light"}, "new": {"theme": "dark"}}, ip_address="192.0.2.10",
            user_agent="Probe/1.0", status=Status.FAILURE, is_sensitive=True, severity=ErrorSeverity.WARNING,
            error_type="ThemeError", stack_trace="Traceback (most recent call last):\n  ...\nThemeError: no",
            fingerprint="f" * 32, http_method="PUT", path="/settings/theme", status_code=409, duration_ms=12,
        )
    [row] = audit_rows(event_id=event_id)
    assert row.user_id == admin_id and row.username == "admin"  # the name is looked up for the id
    assert row.resource_id == "42"
    assert row.event_metadata == {"old": {"theme": "light"}, "new": {"theme": "dark"}}
    assert (row.ip_address, row.user_agent, row.status, row.is_sensitive) == ("192.0.2.10", "Probe/1.0", "FAILURE", True)
    assert (row.severity, row.error_type, row.fingerprint) == ("WARNING", "ThemeError", "f" * 32)
    assert row.stack_trace.splitlines()[-1] == "ThemeError: no"
    assert (row.http_method, row.path, row.status_code, row.duration_ms) == ("PUT", "/settings/theme", 409, 12)


@pytest.mark.parametrize(
    ("action", "resource", "category"),
    [
        (ActionType.LOGIN, ResourceType.SESSION, "authentication"),
        (ActionType.UPDATE, ResourceType.USER, "user_management"),
        (ActionType.ROLE_CHANGE, ResourceType.ROLE, "user_management"),
        (ActionType.PASSWORD_CHANGE, ResourceType.USER, "security"),
        (ActionType.TOKEN_CREATE, ResourceType.API_TOKEN, "security"),
        (ActionType.CREATE, ResourceType.DATA_UPLOAD, "data"),
        (ActionType.EXCEPTION_RAISED, ResourceType.SYSTEM, "errors"),
        (ActionType.REQUEST, ResourceType.REQUEST, "requests"),
        (ActionType.EXPORT, ResourceType.AUDIT_LOG, "audit"),
        (ActionType.READ, ResourceType.SYSTEM, "system"),
    ],
)
@pytest.mark.parametrize("status", list(Status))
def test_action_resource_and_status_combinations(app, audit_rows, action, resource, category, status):
    with app.app_context():
        event_id = log_audit(None, action, resource, "r-1", f"{action} on {resource}", status=status)
    [row] = audit_rows(event_id=event_id)
    assert (row.action_type, row.resource_type, row.status, row.category) == (action, resource, status, category)


def test_enum_values_are_accepted_case_insensitively(app, audit_rows):
    with app.app_context():
        event_id = log_audit(None, "login", "Session", 1, "lowercase", status="failure", severity="critical")
    [row] = audit_rows(event_id=event_id)
    assert (row.action_type, row.resource_type, row.status, row.severity) == ("LOGIN", "SESSION", "FAILURE", "CRITICAL")


def test_request_context_fills_actor_ip_user_agent_and_request_id(app, audit_rows, admin_id):
    with app.test_request_context("/x", environ_base={"REMOTE_ADDR": "198.51.100.4"}, headers={"User-Agent": "Probe/2"}):
        login_user(_user(admin_id))
        first = log_audit(None, ActionType.READ, ResourceType.SETTING, "theme", "Read the theme")
        second = log_audit(None, ActionType.READ, ResourceType.SETTING, "font", "Read the font", ip_address="192.0.2.77")
    [one] = audit_rows(event_id=first)
    [two] = audit_rows(event_id=second)
    assert (one.user_id, one.username, one.ip_address, one.user_agent) == (admin_id, "admin", "198.51.100.4", "Probe/2")
    assert two.ip_address == "192.0.2.77"  # an explicit value wins over the request's
    assert one.request_id and one.request_id == two.request_id


def test_an_explicit_user_is_never_named_after_the_logged_in_one(app, audit_rows, admin_id, make_user):
    bob_id = make_user("bob")
    with app.test_request_context("/x"):
        login_user(_user(admin_id))
        event_id = log_audit(bob_id, ActionType.UPDATE, ResourceType.USER, bob_id, "bob's profile changed")
    [row] = audit_rows(event_id=event_id)
    assert (row.user_id, row.username) == (bob_id, "bob")


def test_transactional_event_commits_or_rolls_back_with_the_change(app, audit_rows):
    with app.app_context():
        rolled_back = log_audit(None, ActionType.CREATE, ResourceType.SETTING, "a", "never happened", transactional=True)
        db.session.rollback()
        committed = log_audit(None, ActionType.CREATE, ResourceType.SETTING, "b", "happened", transactional=True)
        db.session.commit()
    assert audit_rows(event_id=rolled_back) == []
    assert len(audit_rows(event_id=committed)) == 1


def test_a_transactional_event_may_name_a_user_the_transaction_has_not_flushed_yet(app, audit_rows):
    # The change is written before its audit row (the row's user reference must find it), as an ORM
    # execute's autoflush would do.
    from audit_portal.users.models import Role

    with app.app_context():
        role = db.session.scalar(db.select(Role).filter_by(name="user"))
        db.session.add(User(id=4242, username="pending", email="pending@example.com", password_hash="x", role=role))
        event_id = log_audit(4242, ActionType.CREATE, ResourceType.USER, 4242, "pending created", transactional=True,
                             username="pending")
        db.session.commit()
    [row] = audit_rows(event_id=event_id)
    assert row.user_id == 4242 and row.username == "pending"


@pytest.mark.settings(AUDIT_ENABLED=False)
def test_nothing_is_recorded_when_auditing_is_off(app, audit_rows):
    with app.app_context():
        assert log_audit(None, ActionType.CREATE, ResourceType.SETTING, None, "off") is None
        assert log_audit(None, ActionType.CREATE, ResourceType.SETTING, None, "off", transactional=True) is None
        db.session.commit()
    assert audit_rows() == []


# -- bad input and failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"action_type": "TELEPORT"},
        {"resource_type": "SPACESHIP"},
        {"status": "MAYBE"},
        {"severity": "APOCALYPTIC"},
        {"status_code": "four hundred"},
        {"timestamp": datetime(2026, 1, 1)},  # naive: its time zone is unknown
    ],
)
def test_an_invalid_value_stores_an_audit_failure_event_instead(app, audit_rows, bad):
    args = {"action_type": ActionType.UPDATE, "resource_type": ResourceType.SETTING, **bad}
    with app.app_context():
        event_id = log_audit(None, args.pop("action_type"), args.pop("resource_type"), "x", "a bad event", **args)
    rows = audit_rows()
    assert [row.event_id for row in rows] == [event_id]
    [row] = rows
    assert (row.action_type, row.resource_type, row.status) == ("AUDIT_FAILURE", "SYSTEM", "ERROR")
    assert row.event_metadata["intended_action"] == bad.get("action_type", "UPDATE")
    assert row.event_metadata["error"] == "ValueError"
    assert "TELEPORT" not in {r.action_type for r in rows}


class _Unprintable:
    def __repr__(self):
        raise RuntimeError("repr is broken")


def test_a_bug_while_building_the_event_records_a_minimal_event_and_does_not_raise(app, audit_rows):
    with app.app_context():
        event_id = log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "x", "with a broken object",
                             metadata={"thing": _Unprintable()})
    [row] = audit_rows()
    assert row.event_id == event_id
    assert row.action_type == "AUDIT_FAILURE"
    assert row.event_metadata == {"intended_action": "UPDATE", "error": "RuntimeError", "reason": "repr is broken"}
    assert "could not be recorded in full" in row.description


def test_log_audit_never_raises_even_when_nothing_can_record(app, writer, monkeypatch, audit_rows):
    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(writer, "submit", broken)
    monkeypatch.setattr(writer.spool, "append", broken)
    with app.app_context():
        assert log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "x", "lost") is not None
        assert log_login_failed("mallory", "unknown user") is not None
    assert audit_rows() == []


def test_over_long_fields_are_truncated_not_refused(app, audit_rows):
    with app.app_context():
        event_id = log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "r" * 500, "d" * 5000,
                             metadata={"blob": "m" * 40_000}, user_agent="u" * 10_000, error_type="E" * 1000)
    [row] = audit_rows(event_id=event_id)
    assert len(row.description) == 1000 and row.description.endswith("[truncated]")
    assert len(row.resource_id) == 64 and len(row.user_agent) == 512 and len(row.error_type) == 200
    assert row.event_metadata["truncated"] is True


# -- helpers ---------------------------------------------------------------------------------


def test_log_login_is_part_of_the_callers_transaction(app, audit_rows, admin_id):
    with app.app_context():
        event_id = log_login(_user(admin_id))
        db.session.commit()
    [row] = audit_rows(event_id=event_id)
    assert (row.action_type, row.resource_type, row.category) == ("LOGIN", "SESSION", "authentication")
    assert (row.user_id, row.username, row.resource_id, row.status) == (admin_id, "admin", str(admin_id), "SUCCESS")
    assert row.description == "admin logged in"


def test_log_login_failed_names_the_attempt_but_never_a_password(app, audit_rows, admin_id):
    with app.app_context():
        event_id = log_login_failed("admin", "wrong password", _user(admin_id))
        unknown = log_login_failed("mallory", "unknown user")
    [row] = audit_rows(event_id=event_id)
    assert (row.action_type, row.status, row.user_id, row.resource_id) == ("LOGIN_FAILED", "FAILURE", None, str(admin_id))
    assert row.description == "Failed login for 'admin': wrong password"
    assert row.event_metadata == {"attempted_username": "admin", "reason": "wrong password", "known_user": True}
    [other] = audit_rows(event_id=unknown)
    assert other.event_metadata["known_user"] is False and other.resource_id is None


def test_log_logout(app, audit_rows, admin_id):
    with app.app_context():
        event_id = log_logout(_user(admin_id))
    [row] = audit_rows(event_id=event_id)
    assert (row.action_type, row.user_id, row.username, row.description) == ("LOGOUT", admin_id, "admin", "admin logged out")


def test_log_user_action_records_actor_target_and_changes(app, audit_rows, admin_id, make_user):
    bob_id = make_user("bob")
    with app.app_context():
        event_id = log_user_action(_user(admin_id), ActionType.STATUS_CHANGE, _user(bob_id), "admin suspended bob",
                                   {"old": {"status": "active"}, "new": {"status": "suspended"}})
    [row] = audit_rows(event_id=event_id)
    assert (row.user_id, row.username, row.resource_type, row.resource_id) == (admin_id, "admin", "USER", str(bob_id))
    assert row.event_metadata == {"old": {"status": "active"}, "new": {"status": "suspended"}}
    assert row.category == "user_management"


def test_log_admin_action_is_marked_as_such(app, audit_rows, admin_id):
    with app.app_context():
        event_id = log_admin_action(_user(admin_id), ActionType.UPDATE, ResourceType.SETTING, "retention",
                                    "admin set retention to 90 days", {"old": 365, "new": 90})
    [row] = audit_rows(event_id=event_id)
    assert row.event_metadata == {"old": 365, "new": 90, "admin_action": True}
    assert (row.user_id, row.resource_type, row.resource_id) == (admin_id, "SETTING", "retention")


# -- log_error -------------------------------------------------------------------------------


class _OutOfMemory(MemoryError):
    pass


class _InterpreterTrouble(SystemError):
    pass


def _fail(exc: BaseException):
    raise exc


def _fail_elsewhere(exc: BaseException):
    raise exc


def _caught(raiser, exc: BaseException) -> BaseException:
    try:
        raiser(exc)
    except BaseException as caught:  # noqa: B036 - MemoryError and friends on purpose
        return caught
    raise AssertionError("did not raise")


@pytest.mark.parametrize(
    ("exc", "severity"),
    [
        (SystemError("x"), ErrorSeverity.CRITICAL),
        (MemoryError(), ErrorSeverity.CRITICAL),
        (_OutOfMemory(), ErrorSeverity.CRITICAL),
        (_InterpreterTrouble(), ErrorSeverity.CRITICAL),
        (MarshmallowValidationError({"email": ["Not a valid email address."]}), ErrorSeverity.WARNING),
        (WTFormsValidationError("Not a valid choice."), ErrorSeverity.WARNING),
        (ValueError("bad"), ErrorSeverity.ERROR),
        (ZeroDivisionError("division by zero"), ErrorSeverity.ERROR),
        (KeyError("department"), ErrorSeverity.ERROR),
        (RuntimeError("boom"), ErrorSeverity.ERROR),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_log_error_determines_the_severity(app, audit_rows, exc, severity):
    with app.app_context():
        event_id = log_error(_caught(_fail, exc))
    [row] = audit_rows(event_id=event_id)
    assert row.severity == severity
    assert (row.action_type, row.status, row.category) == ("ERROR_OCCURRED", "ERROR", "errors")


def test_log_error_captures_type_message_and_stack_trace(app, audit_rows):
    with app.app_context():
        event_id = log_error(_caught(_fail, ZeroDivisionError("division by zero")))
    [row] = audit_rows(event_id=event_id)
    assert row.error_type == "ZeroDivisionError"
    assert row.description == "ZeroDivisionError: division by zero"
    assert row.stack_trace.startswith("Traceback (most recent call last):")
    assert "in _fail" in row.stack_trace and row.stack_trace.rstrip().endswith("ZeroDivisionError: division by zero")
    assert row.event_metadata["location"] == "tests/audit/write/test_service.py:_fail"
    assert row.event_metadata["message"] == "division by zero"


def test_error_type_names_the_module_of_non_builtin_exceptions(app, audit_rows):
    with app.app_context():
        event_id = log_error(_caught(_fail, MarshmallowValidationError("bad")))
    [row] = audit_rows(event_id=event_id)
    assert row.error_type == "marshmallow.exceptions.ValidationError"


def test_fingerprint_groups_the_same_error_at_the_same_place(app, audit_rows):
    with app.app_context():
        first = log_error(_caught(_fail, ValueError("first message")))
        again = log_error(_caught(_fail, ValueError("another message")))
        elsewhere = log_error(_caught(_fail_elsewhere, ValueError("first message")))
        other_type = log_error(_caught(_fail, KeyError("first message")))
    prints = {eid: audit_rows(event_id=eid)[0].fingerprint for eid in (first, again, elsewhere, other_type)}
    assert prints[first] and prints[first] == prints[again]
    assert len({prints[first], prints[elsewhere], prints[other_type]}) == 3


def test_log_error_redacts_secrets_in_message_and_stack_trace(app, audit_rows):
    with app.app_context():
        event_id = log_error(_caught(_fail, ValueError(f"bad login payload password={CANARY}")))
    [row] = audit_rows(event_id=event_id)
    assert CANARY not in _row_text(row)
    assert "password=[REDACTED]" in row.stack_trace and "password=[REDACTED]" in row.description


class _UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("cannot print me")


def test_log_error_survives_an_exception_that_cannot_be_printed(app, audit_rows):
    with app.app_context():
        event_id = log_error(_caught(_fail, _UnprintableError()))
    [row] = audit_rows(event_id=event_id)
    assert row.error_type == "tests.audit.write.test_service._UnprintableError" and row.stack_trace


# -- @audit_log ------------------------------------------------------------------------------


@audit_log(ActionType.UPDATE, ResourceType.SETTING, resource_id_arg="name", sensitive=True)
def set_setting(name, value, password=None):
    return f"{name}={value}"


@audit_log(ActionType.DELETE, ResourceType.SETTING, description="Deleted a setting")
def delete_setting(name):
    raise PermissionError(f"{name} is protected")


def test_decorator_records_function_params_and_user(app, audit_rows, admin_id):
    with app.test_request_context("/settings", environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        login_user(_user(admin_id))
        assert set_setting("theme", "dark", password=CANARY) == "theme=dark"
    [row] = audit_rows(action_type="UPDATE", resource_type="SETTING")
    assert row.description == "Called set_setting"
    assert row.event_metadata == {
        "function": "tests.audit.write.test_service.set_setting",
        "params": {"name": "theme", "value": "dark", "password": "[REDACTED]"},
    }
    assert (row.user_id, row.username, row.ip_address) == (admin_id, "admin", "203.0.113.9")
    assert (row.status, row.is_sensitive, row.resource_id) == ("SUCCESS", True, "theme")
    assert CANARY not in _row_text(row)


def test_decorator_records_failure_and_lets_the_exception_through(app, audit_rows, admin_id):
    with app.test_request_context("/settings"):
        login_user(_user(admin_id))
        with pytest.raises(PermissionError, match="theme is protected"):
            delete_setting("theme")
    [row] = audit_rows(action_type="DELETE")
    assert row.status == "FAILURE" and row.error_type == "PermissionError"
    assert row.description == "Deleted a setting (failed: PermissionError)"
    assert row.event_metadata["params"] == {"name": "theme"} and row.user_id == admin_id


def test_decorator_outside_a_request_records_an_anonymous_call(app, audit_rows):
    with app.app_context():
        set_setting("font", "serif")
    [row] = audit_rows(action_type="UPDATE")
    assert row.user_id is None and row.ip_address is None and row.status == "SUCCESS"
