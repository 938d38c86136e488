"""``audit_portal/metrics/views.py`` and the settings check in ``metrics/__init__.py``: /metrics is a 404 unless
METRICS_ENABLED; without METRICS_TOKEN it answers direct loopback requests only; with one, a bearer token is
required from everyone, loopback included; scrapes are never recorded as REQUEST events."""

from __future__ import annotations

import pytest

from audit_portal import ConfigError, create_app
from audit_portal.metrics import timing

TOKEN = "metrics-token-0123456789abcdef"


@pytest.mark.settings(METRICS_ENABLED=False, METRICS_TOKEN=TOKEN)
def test_metrics_are_off_unless_enabled(app, client):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert timing._start not in app.before_request_funcs.get(None, [])  # no hook costs a request anything
    assert "metrics_collectors" not in app.extensions


def test_without_a_token_only_direct_loopback_requests_get_the_metrics(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE http_request_duration_seconds histogram" in response.get_data(as_text=True)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert refused.status_code == 403 and b"loopback only" in refused.data
    # A reverse proxy on the same host forwards outside clients from 127.0.0.1: refused too.
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        assert client.get("/metrics", headers={header: "203.0.113.9"}).status_code == 403


@pytest.mark.settings(METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize("remote", ["127.0.0.1", "203.0.113.9"])
def test_with_a_token_everyone_needs_it_loopback_included(client, remote):
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}):
        response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"audit_" not in response.data
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == 200 and b"audit_events_written_total" in response.data


@pytest.mark.parametrize("token", ["short", "x" * 15])
def test_a_short_token_is_refused_at_start(app_config, token):
    with pytest.raises(ConfigError, match="METRICS_TOKEN must be a random string of at least 16 characters"):
        create_app({**app_config, "METRICS_ENABLED": True, "METRICS_TOKEN": token})


def test_the_openmetrics_format_is_served_to_a_scraper_that_asks_for_it(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


# Every method recorded everywhere: only the exclusion keeps scrapes out of the trail.
@pytest.mark.settings(AUDIT_REQUEST_METHODS="GET,HEAD,POST,PUT,PATCH,DELETE")
def test_scrapes_are_not_recorded_as_request_events(client, audit_rows):
    for _ in range(3):
        assert client.get("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405
    assert client.get("/auth/login").status_code == 200  # recorded: the events are being written
    paths = [event.path for event in audit_rows(action_type="REQUEST")]
    assert paths == ["/auth/login"]
