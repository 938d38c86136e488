"""``read/histogram.py`` and ``GET /api/v1/audit-logs/histogram``: events per time bucket and status, exact up
to AUDIT_HISTOGRAM_EXACT_LIMIT matching events, estimated past it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from audit_portal.audit.record.enums import ActionType as A
from audit_portal.audit.record.enums import ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from tests.api_helpers import bearer, make_token

DAY = datetime(2026, 11, 10, tzinfo=UTC)


def _insert(app, events: list[tuple[datetime, Status, A]]) -> None:
    rows = [build_event(action, ResourceType.SESSION, None, f"at {ts.isoformat()}", timestamp=ts, status=status,
                        ip_address="10.0.0.1" if action == A.LOGIN_FAILED else "192.0.2.1")
            for ts, status, action in events]
    with app.app_context():
        with db.engine.begin() as connection:
            insert_ignoring_duplicates(connection, rows)
        db.session.remove()


@pytest.fixture
def headers(app, admin_id):
    return bearer(make_token(app, admin_id))


@pytest.fixture
def day_of_events(app):
    """Six hours of 2026-11-10: hour 0 two logins, hour 1 a failed login, hour 3 an error and a failure."""
    _insert(app, [
        (DAY + timedelta(minutes=5), Status.SUCCESS, A.LOGIN),
        (DAY + timedelta(minutes=59, seconds=59), Status.SUCCESS, A.LOGIN),
        (DAY + timedelta(hours=1), Status.FAILURE, A.LOGIN_FAILED),
        (DAY + timedelta(hours=3, minutes=30), Status.ERROR, A.EXCEPTION_RAISED),
        (DAY + timedelta(hours=3, minutes=31), Status.FAILURE, A.LOGIN_FAILED),
        (DAY + timedelta(hours=6), Status.SUCCESS, A.LOGIN),  # the range's end: excluded
        (DAY - timedelta(seconds=1), Status.SUCCESS, A.LOGIN),  # before its start: excluded
    ])


def _get(client, headers, **params):
    return client.get("/api/v1/audit-logs/histogram", query_string=params, headers=headers)


def test_each_bucket_counts_its_events_by_status(client, headers, day_of_events):
    response = _get(client, headers, date_from="2026-11-10T00:00", date_to="2026-11-10T06:00", buckets=6)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["exact"] is True and data["total"] == 5 and data["sampled_per_bucket"] is None
    assert [b["counts"] for b in data["buckets"]] == [
        {"SUCCESS": 2, "FAILURE": 0, "ERROR": 0}, {"SUCCESS": 0, "FAILURE": 1, "ERROR": 0},
        {"SUCCESS": 0, "FAILURE": 0, "ERROR": 0}, {"SUCCESS": 0, "FAILURE": 1, "ERROR": 1},
        {"SUCCESS": 0, "FAILURE": 0, "ERROR": 0}, {"SUCCESS": 0, "FAILURE": 0, "ERROR": 0}]
    assert [b["total"] for b in data["buckets"]] == [2, 1, 0, 2, 0, 0]
    assert data["buckets"][1]["start"] == "2026-11-10T01:00:00+00:00"
    assert data["buckets"][1]["end"] == "2026-11-10T02:00:00+00:00"


def test_the_query_narrows_the_counts_and_its_created_terms_set_the_range(client, headers, day_of_events):
    data = _get(client, headers, q="-status:success created:>=2026-11-10T00:00 created:<2026-11-10T06:00",
                buckets=2).json["data"]
    assert data["start"] == "2026-11-10T00:00:00+00:00" and data["end"] == "2026-11-10T06:00:00+00:00"
    assert [b["counts"] for b in data["buckets"]] == [{"SUCCESS": 0, "FAILURE": 1, "ERROR": 0},
                                                       {"SUCCESS": 0, "FAILURE": 1, "ERROR": 1}]
    data = _get(client, headers, q="ip:10.0.0.0/8", date_from="2026-11-10", buckets=1).json["data"]
    assert data["buckets"][0]["counts"] == {"SUCCESS": 0, "FAILURE": 2, "ERROR": 0}
    # A start in the past and no end: up to now.
    assert abs((datetime.fromisoformat(data["end"]) - datetime.now(UTC)).total_seconds()) < 120


def test_without_a_range_it_covers_the_last_thirty_days(app, client, headers):
    now = datetime.now(UTC)
    _insert(app, [(now - timedelta(days=29), Status.SUCCESS, A.LOGIN), (now - timedelta(days=31), Status.SUCCESS,
                                                                          A.LOGIN)])
    data = _get(client, headers, q="action:login").json["data"]
    assert len(data["buckets"]) == 50 and data["total"] == 1 and data["buckets"][1]["total"] == 1
    start, end = datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])
    assert end - start == timedelta(days=30) and abs((end - now).total_seconds()) < 120


def test_past_the_exact_limit_full_buckets_are_estimated_and_say_so(app, client, headers):
    app.config["AUDIT_HISTOGRAM_EXACT_LIMIT"] = 40  # 2 buckets: each reads 20 events, then extrapolates
    busy = [(DAY + timedelta(minutes=m), Status.FAILURE if m % 4 == 0 else Status.SUCCESS, A.LOGIN)
            for m in range(100)]
    quiet = [(DAY + timedelta(minutes=100 + m), Status.SUCCESS, A.LOGIN) for m in range(0, 100, 20)]
    _insert(app, busy + quiet)
    data = _get(client, headers, date_from="2026-11-10T00:00", date_to="2026-11-10T03:20", buckets=2).json["data"]
    assert data["exact"] is False and data["sampled_per_bucket"] == 20
    first, second = data["buckets"]
    assert first["exact"] is False and 90 <= first["total"] <= 110  # 100 events, estimated from the first 21
    assert first["counts"]["FAILURE"] > 0 and first["counts"]["ERROR"] == 0
    assert second["exact"] is True and second["counts"] == {"SUCCESS": 5, "FAILURE": 0, "ERROR": 0}


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"buckets": "0"}, "buckets", "from 1 to 200"),
    ({"buckets": "201"}, "buckets", "from 1 to 200"),
    ({"buckets": "ten"}, "buckets", "Not a valid integer"),
    ({"q": "colour:red"}, "q", "unknown key"),
    ({"date_from": "2026-11-12", "date_to": "2026-11-11"}, "date_from", "before date_to"),
    ({"bucket": "5"}, "bucket", "Unknown parameter"),
])
def test_bad_input_is_a_422_naming_the_parameter(client, headers, params, field, message):
    response = _get(client, headers, **params)
    assert response.status_code == 422
    assert any(message in text for text in response.json["errors"][field]), response.json


def test_only_admins_read_it(app, client, make_user):
    assert client.get("/api/v1/audit-logs/histogram").status_code == 401
    user = bearer(make_token(app, make_user("carol")))
    assert client.get("/api/v1/audit-logs/histogram", headers=user).status_code == 403


def test_the_viewer_draws_it_and_a_bar_narrows_the_range_to_its_bucket(admin_client, day_of_events):
    page = admin_client.get("/admin/audit-logs/", query_string={
        "date_from": "2026-11-10T00:00", "date_to": "2026-11-10T06:00", "q": "action:login,login_failed"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-testid="histogram"' in html
    assert "4 events, 2026-11-10 00:00 to 2026-11-10 06:00 (UTC), 50 bars of 7 min 12 s" in " ".join(html.split())
    bar = re.search(r'<a href="([^"]+)"\s+class="histogram-bucket"[^>]*aria-label="([^"]+)"', html)
    assert bar and bar.group(2) == "Nov 10 00:00 – Nov 10 00:07: 1 event (SUCCESS 1)"
    narrowed = admin_client.get(bar.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert "at 2026-11-10T00:05:00" in narrowed and "at 2026-11-10T00:59:59" not in narrowed
    assert "The histogram as a table" in html and "histogram-estimated" not in html


def test_the_viewer_says_when_the_bars_are_estimated(app, admin_client):
    app.config["AUDIT_HISTOGRAM_EXACT_LIMIT"] = 40
    _insert(app, [(DAY + timedelta(minutes=m), Status.SUCCESS, A.LOGIN) for m in range(100)])
    html = admin_client.get("/admin/audit-logs/", query_string={"date_from": "2026-11-10", "q": "action:login",
                                                                "date_to": "2026-11-10T02:00"}).get_data(as_text=True)
    assert 'data-exact="false"' in html and 'data-testid="histogram-estimated"' in html and "≈" in html


@pytest.mark.parametrize("params", [
    {"date_from": "9999-12-31"}, {"q": "created:>=9999-12-31"}, {"date_to": "0001-01-02"},
    {"date_to": "0001-01-01T00:00Z"}, {"q": "created:<0001-01-02"}, {"q": "created:<0001-01-01"},
])
def test_ranges_at_the_ends_of_the_calendar_are_answered_not_a_500(client, headers, admin_client, params):
    response = _get(client, headers, **params)
    assert response.status_code in (200, 422), response.json
    assert admin_client.get("/admin/audit-logs/", query_string=params).status_code in (200, 422)


def test_dates_that_exclude_each_other_give_no_bars(app, client, headers, admin_client):
    _insert(app, [(datetime(2025, 12, 20, tzinfo=UTC), Status.SUCCESS, A.LOGIN)])
    params = {"date_from": "2026-02-01", "q": "created:<2026-01-01"}
    data = _get(client, headers, **params).json["data"]
    assert data["buckets"] == [] and data["total"] == 0
    page = admin_client.get("/admin/audit-logs/", query_string=params).get_data(as_text=True)
    assert "no event can match" in page and 'data-testid="histogram-bucket"' not in page
