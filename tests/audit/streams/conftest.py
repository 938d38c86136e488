"""Stream tests: short backoff and resend windows, receivers on loopback, events recorded and sealed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit_portal.audit.integrity.seal import seal
from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.streams.runner import Dispatcher
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from tests.api_helpers import bearer, make_token


@pytest.fixture
def app_config(app_config, tmp_path):
    return {**app_config, "STREAM_MAX_BACKOFF_SECONDS": 0.2, "STREAM_RESEND_SECONDS": 1,
            "AUDIT_STREAM_FILE_DIR": str(tmp_path / "streams")}


def record_events(app, count: int, **fields) -> list[str]:
    """Store ``count`` events (as the background writer does) and seal them; returns their event ids in order."""
    kinds = [(ActionType.LOGIN, ResourceType.SESSION, Status.SUCCESS), (ActionType.LOGIN_FAILED, ResourceType.SESSION,
             Status.FAILURE), (ActionType.UPDATE, ResourceType.USER, Status.SUCCESS)]
    start = utcnow() - timedelta(seconds=count)
    events = []
    for i in range(count):
        action, resource, status = kinds[i % len(kinds)]
        events.append(build_event(action, resource, i, f"event {i}", status=status, username=f"user{i % 7}",
                                  timestamp=start + timedelta(seconds=i), **fields))
    with app.app_context():
        for first in range(0, count, 5000):
            with db.engine.begin() as connection:
                insert_ignoring_duplicates(connection, events[first:first + 5000])
        seal()
        db.session.remove()
    return [event["event_id"] for event in events]


def deliver(app, rounds: int = 50) -> int:
    """Run dispatcher rounds until one delivers nothing (or ``rounds``); returns the events delivered."""
    dispatcher = Dispatcher(app)
    total = 0
    try:
        for _ in range(rounds):
            delivered = dispatcher.round()
            total += delivered
            if not delivered:
                break
    finally:
        dispatcher.close()
    return total


@pytest.fixture
def admin_headers(app, admin_id):
    return bearer(make_token(app, admin_id))
