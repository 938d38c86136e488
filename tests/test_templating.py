"""The Jinja filters every page shares: times in the viewer's zone (UTC for anyone not logged in)."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from flask import g

from audit_portal.templating import localtime, timeago, viewer_timezone

WINTER = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def as_viewer(app):
    """Render as a logged-in user whose zone is the given name (Flask-Login reads ``g._login_user``)."""

    def view(zone):
        context = app.test_request_context()
        context.push()
        g._login_user = SimpleNamespace(timezone=zone, is_authenticated=True)
        return context

    contexts = []
    yield lambda zone: contexts.append(view(zone))
    for context in reversed(contexts):
        context.pop()


@pytest.mark.parametrize("zone, when, shown", [
    ("UTC", WINTER, "2026-01-15 12:00:00"),
    ("Europe/Paris", WINTER, "2026-01-15 13:00:00"),
    ("Europe/Paris", SUMMER, "2026-07-15 14:00:00"),  # daylight saving time
    ("America/New_York", WINTER, "2026-01-15 07:00:00"),
    ("Asia/Tokyo", datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "2026-12-01 08:30:00"),
    ("Asia/Tokyo", datetime(2026, 11, 30, 23, 30), "2026-12-01 08:30:00"),  # naive means UTC
    ("Asia/Kolkata", datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "2026-12-01 05:00:00"),
    ("Nowhere/Gone", WINTER, "2026-01-15 12:00:00"),  # a name this machine cannot load: UTC, not a 500
])
def test_localtime_shows_the_viewers_zone(as_viewer, zone, when, shown):
    as_viewer(zone)
    assert localtime(when) == shown
    assert viewer_timezone() == zone


def test_localtime_takes_a_format_and_none(as_viewer):
    as_viewer("Europe/Paris")
    assert localtime(SUMMER, "%H:%M %Z") == "14:00 CEST"
    assert localtime(None) == ""


def test_anonymous_visitors_and_code_outside_a_request_see_utc(app):
    with app.test_request_context():
        assert viewer_timezone() == "UTC" and localtime(WINTER) == "2026-01-15 12:00:00"
    assert viewer_timezone() == "UTC" and localtime(WINTER) == "2026-01-15 12:00:00"


def test_timeago():
    assert timeago(WINTER - timedelta(minutes=5), now=WINTER) == "5 minutes ago"
    assert timeago(WINTER + timedelta(hours=2), now=WINTER) == "in 2 hours"
    assert timeago(None) == ""
