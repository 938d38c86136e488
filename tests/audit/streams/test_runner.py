"""``audit_portal/audit/streams/runner.py``: the dispatcher thread an app process starts with its first request
delivers without anyone asking; ``flask streams run`` is the same loop in a process of its own."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import record_events


@pytest.mark.settings(STREAM_DISPATCH_IN_APP=True, STREAM_POLL_SECONDS=0.05)
def test_the_first_request_starts_a_dispatcher_that_delivers_in_the_background(app, client, admin_headers, tmp_path):
    dispatcher = app.extensions["audit_streams"]
    try:
        response = client.post("/api/v1/streams/", headers=admin_headers,
                               json={"name": "file", "kind": "file", "path": "bg.ndjson"})
        assert response.status_code == 201
        ids = record_events(app, 20)
        target = tmp_path / "streams" / "bg.ndjson"
        deadline = time.monotonic() + 10
        delivered: list[str] = []
        while time.monotonic() < deadline and not set(ids) <= set(delivered):
            time.sleep(0.05)
            delivered = [json.loads(line)["event_id"] for line in target.read_text().splitlines()] \
                if target.exists() else []
        assert [e for e in delivered if e in set(ids)] == ids
    finally:
        dispatcher.stop()


def test_without_it_nothing_is_started(app):
    assert "audit_streams" not in app.extensions  # the testing default: tests run dispatchers themselves
