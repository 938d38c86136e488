"""Retention settings: AUDIT_RETENTION_DAYS_BY_CATEGORY is parsed at startup, and a bad one stops the app with a
message naming the bad part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit_portal import ConfigError, create_app
from audit_portal.audit.integrity import retention


def test_periods_per_category_with_the_rest_at_the_default():
    config = {"AUDIT_RETENTION_DAYS": 365,
              "AUDIT_RETENTION_DAYS_BY_CATEGORY": " Requests=90, authentication = 365,security=2555 ,"}
    assert retention.periods(config) == {"requests": 90, "authentication": 365, "security": 2555, "*": 365}
    now = datetime(2026, 12, 7, tzinfo=UTC)
    cutoffs = retention.cutoffs({"requests": 90, "*": 0}, now)
    assert cutoffs == {"requests": now - timedelta(days=90), "*": now}
    assert retention.cutoff_for(cutoffs, "requests") == now - timedelta(days=90)
    assert retention.cutoff_for(cutoffs, "data") == now


@pytest.mark.parametrize(("value", "message"), [
    ("requestz=90", "'requestz' is not a category"),
    ("requests=ninety", "requests='ninety': the days must be a whole number"),
    ("requests=-1", "requests=-1: the days must not be negative"),
    ("requests", "'requests' is not category=days"),
    ("requests=90,requests=30", "'requests' is given twice"),
])
def test_a_bad_setting_stops_the_app_naming_the_bad_part(monkeypatch, tmp_path, value, message):
    monkeypatch.setenv("AUDIT_RETENTION_DAYS_BY_CATEGORY", value)
    with pytest.raises(ConfigError, match="AUDIT_RETENTION_DAYS_BY_CATEGORY") as info:
        create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})
    assert message in str(info.value)


def test_a_negative_default_stops_the_app(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "-5")
    with pytest.raises(ConfigError, match="AUDIT_RETENTION_DAYS: expected a whole number of days from 0"):
        create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})


def test_a_good_setting_starts(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_RETENTION_DAYS_BY_CATEGORY", "requests=90,security=2555")
    app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"})
    assert retention.periods(app.config)["requests"] == 90
    app.extensions["audit_writer"].close()
