"""``audit_portal/audit/alerts/runner.py``: one evaluator at a time, and settings that could never deliver a
notification refused at start-up."""

from __future__ import annotations

import time

import pytest

from audit_portal import create_app
from audit_portal.audit.alerts.runner import AlertRunner
from audit_portal.config import ConfigError

from .conftest import alerts
from .test_evaluator import _attempts
from .test_rules import failed_logins


def test_one_evaluator_at_a_time_and_the_next_takes_over_when_it_stops(app):
    first, second = AlertRunner(app), AlertRunner(app)
    try:
        assert first.round() is not None
        failed_logins(app, 20, distinct=True)
        assert app.extensions["audit_writer"].flush()
        assert second.round() is None  # the first holds the lock: the second does nothing
        assert alerts(app, "brute_force_ip") == []
        first.close()
        assert second.round() is not None
        assert len(alerts(app, "brute_force_ip")) == 1
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(("settings", "message"), [
    ({"ALERT_WEBHOOK_URL": "http://hooks.example.com/alerts", "ALERT_WEBHOOK_SECRET": "x" * 32},
     "ALERT_WEBHOOK_URL: Plain http:// is accepted only for a loopback address"),
    ({"ALERT_WEBHOOK_URL": "https://hooks.example.com/alerts", "ALERT_WEBHOOK_SECRET": "short"},
     "ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET"),
])
def test_a_webhook_that_could_never_be_delivered_or_verified_is_refused_at_start(app_config, settings, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**app_config, **settings})


@pytest.mark.settings(ALERT_EVAL_IN_APP=True, ALERT_EVAL_INTERVAL=0.2)
def test_the_first_request_starts_an_evaluator_that_opens_alerts_in_the_background(app, client):
    evaluator = app.extensions["audit_alerts"]
    try:
        _attempts(client, 20, ip="192.0.2.77")  # failed logins through the form: the first request starts it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not alerts(app, "brute_force_ip"):
            time.sleep(0.1)
        [alert] = alerts(app, "brute_force_ip")
        assert alert["group"] == "192.0.2.77"
    finally:
        evaluator.stop()


def test_without_it_no_evaluator_is_started(app):
    assert "audit_alerts" not in app.extensions  # the testing default: tests evaluate themselves
