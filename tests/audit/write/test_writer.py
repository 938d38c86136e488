"""The background writer: request and error events are written off the request path, survive a database
outage (spooled, then replayed once it is back, exactly once) and are not lost when the process ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.write.service import log_audit

ROOT = Path(__file__).resolve().parents[3]


def test_events_are_written_off_the_request_path(client, writer, audit_rows):
    response = client.post("/_test/probe")
    assert response.status_code == 201
    assert writer.flush()
    [row] = audit_rows(action_type="REQUEST")
    assert row.path == "/_test/probe"


def test_requests_succeed_during_an_outage_and_their_events_are_replayed(client, writer, database_outage, spooled,
                                                                         audit_rows):
    for i in range(3):
        assert client.post(f"/_test/probe?n={i}").status_code == 201
    assert client.get("/healthz").status_code == 200  # the app's own database is still there
    assert writer.flush()
    assert [e["path"] for e in spooled()] == ["/_test/probe?n=0", "/_test/probe?n=1", "/_test/probe?n=2"]
    assert audit_rows(action_type="REQUEST") == []

    database_outage()  # the database is back: the next write replays the spool too
    client.post("/_test/probe?n=3")
    paths = sorted(row.path for row in audit_rows(action_type="REQUEST"))
    assert paths == [f"/_test/probe?n={i}" for i in range(4)]
    assert spooled() == []


def test_replaying_the_same_spool_twice_stores_each_event_once(app, writer, database_outage, audit_rows):
    with app.app_context():
        ids = [log_audit(None, ActionType.UPDATE, ResourceType.SETTING, str(i), f"change {i}") for i in range(5)]
    assert writer.flush()
    copy = writer.spool.path.with_suffix(".copy")
    shutil.copy(writer.spool.path, copy)
    database_outage()
    assert writer.replay_spool() == 5
    shutil.copy(copy, writer.spool.path)  # e.g. a crash after inserting, before truncating the spool
    assert writer.replay_spool() == 5
    rows = audit_rows(action_type="UPDATE")
    assert sorted(row.event_id for row in rows) == sorted(ids)


def test_replay_waits_while_the_database_is_still_down(app, writer, database_outage, spooled):
    with app.app_context():
        log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "x", "change")
    assert writer.flush()
    assert writer.replay_spool() == 0
    assert len(spooled()) == 1


def test_an_event_for_a_vanished_user_does_not_hold_back_the_others(app, writer, make_user, audit_rows, spooled):
    ghost = make_user("ghost")
    with app.app_context():
        ids = [log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "a", "before")]
        ids.append(log_audit(ghost + 1000, ActionType.UPDATE, ResourceType.USER, "b", "by a user that is gone",
                             username="ghost"))
        ids.append(log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "c", "after"))
    rows = {row.event_id: row for row in audit_rows(action_type="UPDATE")}
    assert set(rows) == set(ids)
    salvaged = rows[ids[1]]
    assert salvaged.user_id is None and salvaged.username == "ghost"
    assert salvaged.event_metadata == {"audit_note": f"user id {ghost + 1000} was not found when this event was written"}
    assert spooled() == []


def test_a_row_the_database_refuses_is_kept_as_a_stand_in_and_never_blocks_the_spool(app, writer, audit_rows,
                                                                                     spooled):
    from audit_portal.audit.record.events import build_event
    from audit_portal.timeutil import utcnow

    def event(description, **override):
        return {**build_event(ActionType.UPDATE, ResourceType.SETTING, "s", description, timestamp=utcnow()),
                **override}

    refused = event("refused", category=None)  # NOT NULL: refused by SQLite and PostgreSQL alike
    good = [event("first"), event("second")]
    writer.spool.append([good[0], refused, good[1]])  # e.g. spooled during an outage
    assert writer.replay_spool() == 3
    assert spooled() == []
    stored = {row.description for row in audit_rows(action_type="UPDATE")}
    assert stored == {"first", "second"}
    [stand_in] = audit_rows(action_type="AUDIT_FAILURE")
    assert refused["event_id"] in stand_in.description
    assert json.loads(stand_in.event_metadata["refused_event"])["description"] == "refused"


def test_events_submitted_after_close_are_written_at_once(app, writer, audit_rows):
    writer.close()
    with app.app_context():
        event_id = log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "x", "late")
    assert [row.event_id for row in audit_rows(event_id=event_id)] == [event_id]


@pytest.mark.settings(AUDIT_WRITE_DELAY_MS=600_000)
def test_the_write_delay_gathers_events_but_never_holds_back_a_full_batch(app, writer):
    from sqlalchemy import func, select

    from audit_portal.audit.record.models import AuditLog
    from audit_portal.audit.write.writer import BATCH_SIZE
    from audit_portal.extensions import db

    def stored() -> int:
        with app.app_context():
            return db.session.scalar(select(func.count()).select_from(AuditLog))

    with app.app_context():
        log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "x", "first")
    time.sleep(0.3)
    assert stored() == 0  # gathering: a lone event waits for the delay (or a flush)
    with app.app_context():
        for i in range(3 * BATCH_SIZE):
            log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "x", f"burst {i}")
    deadline = time.monotonic() + 60
    while stored() < 2 * BATCH_SIZE and time.monotonic() < deadline:
        time.sleep(0.05)
    # A backlog is written batch after batch at once, not one batch per (here ten-minute) delay.
    assert stored() >= 2 * BATCH_SIZE
    assert writer.flush()
    assert stored() == 3 * BATCH_SIZE + 1


# -- the process ends ------------------------------------------------------------------------

CHILD = """
import json, sys, time
from audit_portal import create_app
from audit_portal.audit.write import writer as audit_writer
from tests.audit.conftest import make_test_blueprint

config = json.loads(sys.argv[1])
mode = sys.argv[2]
if mode == "slow":
    # The writer is still busy with its first batch when the process exits.
    original = audit_writer.AuditWriter._write

    def slow_write(self, batch):
        time.sleep(0.3)
        original(self, batch)

    audit_writer.AuditWriter._write = slow_write
else:
    # No writer thread at all: every event stays queued until the process ends.
    audit_writer.AuditWriter._ensure_thread = lambda self: None

app = create_app(config)
app.register_blueprint(make_test_blueprint())
client = app.test_client()
for i in range(5):
    assert client.post(f"/_test/probe?n={i}").status_code == 201
print("ready", flush=True)
if mode == "sigterm":
    time.sleep(60)
"""


def _child(app, tmp_path, mode: str) -> subprocess.Popen:
    config = {key: app.config[key] for key in ("APP_ENV", "SQLALCHEMY_DATABASE_URI", "AUDIT_DATA_DIR", "SECRET_KEY")}
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(script), json.dumps(config), mode], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _request_paths(audit_rows) -> list[str]:
    return sorted(row.path for row in audit_rows(action_type="REQUEST"))


EXPECTED = [f"/_test/probe?n={i}" for i in range(5)]


def test_queued_events_are_written_when_the_process_exits(app, tmp_path, audit_rows, spooled):
    child = _child(app, tmp_path, "slow")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "ready"
    assert _request_paths(audit_rows) == EXPECTED
    assert spooled() == []


def test_queued_events_are_written_when_the_process_gets_sigterm(app, tmp_path, audit_rows, spooled):
    child = _child(app, tmp_path, "sigterm")
    try:
        ready = child.stdout.readline().strip()
        if ready == "ready":
            assert _request_paths(audit_rows) == []  # nothing written yet
            child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert ready == "ready", err
    assert child.returncode == 128 + signal.SIGTERM, err
    assert _request_paths(audit_rows) == EXPECTED
    assert spooled() == []
