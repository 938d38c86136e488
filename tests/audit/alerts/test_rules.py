"""``audit_portal/audit/alerts/rules.py``: every built-in rule fires on what it watches for, and a close case
does not (one event short of the threshold, the other side of a boundary)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit_portal.audit.integrity.verify import VerifyResult, record_verification
from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.service import log_audit, log_error, log_export, log_login_failed
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from audit_portal.users import services as user_services

from .conftest import alerts, evaluate


def failed_logins(app, count: int, *, ip="203.0.113.5", username="victim", distinct=False, action=None):
    with app.app_context():
        for i in range(count):
            name = f"{username}{i}" if distinct else username
            if action is None:
                log_login_failed(name, "wrong password", ip_address=ip)
            else:
                log_audit(None, action, ResourceType.SESSION, None, f"throttled {name}",
                          {"attempted_username": name}, ip_address=ip, status=Status.FAILURE)


def fired(app, rule: str) -> list[dict]:
    evaluate(app)
    return alerts(app, rule)


@pytest.mark.parametrize(("count", "expected"), [(20, 1), (19, 0)])
def test_brute_force_ip_fires_at_its_threshold(app, count, expected):
    failed_logins(app, count, distinct=True)
    found = fired(app, "brute_force_ip")
    assert len(found) == expected
    if expected:
        assert found[0]["group"] == "203.0.113.5" and found[0]["count"] == 20 and found[0]["severity"] == "ERROR"
        assert "ip_address=203.0.113.5" in found[0]["events_url"]


@pytest.mark.parametrize(("count", "expected"), [(10, 1), (9, 0)])
def test_brute_force_username_counts_one_attempted_name_across_ips(app, count, expected):
    for i in range(count):
        failed_logins(app, 1, ip=f"198.51.100.{i + 1}", username="victim")
    found = fired(app, "brute_force_username")
    assert len(found) == expected
    if expected:
        assert found[0]["group"] == "victim" and "username=victim" in found[0]["events_url"]


@pytest.mark.parametrize(("distinct", "expected"), [(10, 1), (9, 0)])
def test_password_spraying_counts_distinct_usernames_from_one_ip(app, distinct, expected):
    failed_logins(app, distinct, distinct=True, ip="192.0.2.9")
    failed_logins(app, 5, username="victim0", ip="192.0.2.9")  # repeats of one name add nothing
    found = fired(app, "password_spraying")
    assert len(found) == expected
    if expected:
        assert found[0]["count"] == 10 and found[0]["severity"] == "CRITICAL"


def test_throttled_attempts_fire_login_throttled_and_count_as_failed_logins(app):
    failed_logins(app, 12, distinct=True, action=ActionType.LOGIN_THROTTLED)
    failed_logins(app, 8, distinct=True)
    evaluate(app)
    assert len(alerts(app, "login_throttled")) == 1
    assert alerts(app, "brute_force_ip")[0]["count"] == 20  # 12 throttled + 8 failed


def test_failed_logins_alone_do_not_fire_login_throttled(app):
    failed_logins(app, 5)
    assert fired(app, "login_throttled") == []


def test_new_admin_fires_on_creation_as_admin_and_on_promotion_not_for_a_plain_user(app, make_user):
    plain_id = make_user("plain", role="user")
    assert fired(app, "new_admin") == []
    boss_id = make_user("boss", role="admin")
    with app.app_context():
        promoted = user_services.find_user_by_username("plain")
        user_services.update_user(db.session.get(type(promoted), boss_id), promoted, role="admin")
        db.session.commit()
    found = fired(app, "new_admin")
    assert sorted(a["group"] for a in found) == sorted([str(boss_id), str(plain_id)])  # one alert per new admin


@pytest.mark.parametrize(("rows", "expected"), [(10_000, 1), (9_999, 0)])
def test_large_export_fires_from_its_row_count(app, rows, expected):
    with app.app_context():
        log_export(rows, "csv", {}, "api")
    assert len(fired(app, "large_export")) == expected


def _error(app, message: str, when=None):
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        with app.app_context():
            log_error(exc, **({"timestamp": when} if when else {}))


def test_new_error_fires_for_a_first_seen_fingerprint_not_for_one_seen_before(app):
    _error(app, "seen before", when=utcnow() - timedelta(days=2))  # long before the window, and never alerted
    _error(app, "seen before, again")  # the same fingerprint (the same code path)
    assert fired(app, "new_error") == []
    try:
        raise KeyError("never seen")  # another type: another fingerprint
    except KeyError as exc:
        with app.app_context():
            log_error(exc)
    [alert] = fired(app, "new_error")
    assert alert["count"] == 1 and len(alert["group"]) == 32  # the new fingerprint


@pytest.mark.parametrize(("days_ago", "expected"), [(8, 1), (3, 0)])
def test_error_regression_needs_the_days_of_silence(app, days_ago, expected):
    _error(app, "came back", when=utcnow() - timedelta(days=days_ago))
    _error(app, "came back")
    assert len(fired(app, "error_regression")) == expected


@pytest.mark.parametrize(("count", "expected"), [(50, 1), (49, 0)])
def test_error_spike_fires_at_fifty_errors_in_five_minutes(app, count, expected):
    for i in range(count):
        _error(app, f"boom {i}")
    assert len(fired(app, "error_spike")) == expected


@pytest.mark.parametrize(("ok", "expected"), [(False, 1), (True, 0)])
def test_verification_failed_fires_when_the_chain_is_broken(app, ok, expected):
    result = VerifyResult(checked=10)
    if not ok:
        result.problem("link 4: hash mismatch")
    with app.app_context():
        record_verification(result)
        db.session.commit()
    assert len(fired(app, "verification_failed")) == expected


def test_audit_write_failure_fires_on_a_stand_in_event_not_on_normal_ones(app):
    with app.app_context():
        log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "theme", "normal")
    assert fired(app, "audit_write_failure") == []
    with app.app_context():
        log_audit(None, "NOT_AN_ACTION", ResourceType.SETTING, "theme", "cannot be built")
    assert len(fired(app, "audit_write_failure")) == 1


def test_audit_write_failure_fires_while_the_spool_holds_events(app, tmp_path, monkeypatch):
    writer = app.extensions["audit_writer"]
    # Not replayed yet (the writer replays when it next writes, e.g. the outbox's move after the evaluation commits).
    monkeypatch.setattr(writer, "_maybe_replay", lambda: None)
    writer.spool.append([build_event(ActionType.LOGIN, ResourceType.SESSION, 1, "spooled", timestamp=utcnow())])
    found = fired(app, "audit_write_failure")
    assert [a["group"] for a in found] == ["spool"]
