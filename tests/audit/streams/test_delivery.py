"""``audit_portal/audit/streams/dispatcher.py``: every sealed event reaches a webhook and a file in link order,
after failures too; a webhook batch is signed and keeps its delivery id on retries; one dispatcher per
destination at a time."""

from __future__ import annotations

import json
import os
import time

import pytest

from audit_portal.audit.delivery.webhook import verify as verify_signature
from audit_portal.audit.integrity.seal import seal
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.streams.dispatcher import lag
from audit_portal.audit.streams.models import StreamDestination
from audit_portal.audit.streams.runner import DestinationLock, Dispatcher
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from .conftest import deliver, record_events
from .receivers import WebhookReceiver


def add(client, token_headers, **payload):
    response = client.post("/api/v1/streams/", json=payload, headers=token_headers)
    assert response.status_code == 201, response.json
    return response.json["data"]


def test_a_webhook_that_fails_then_recovers_gets_every_event_in_order_signed(app, client, admin_headers):
    with WebhookReceiver() as receiver:
        created = add(client, admin_headers, name="hook", kind="webhook", url=receiver.url, start="beginning",
                      headers={"Authorization": "Splunk abc"})
        expected = record_events(app, 1200)  # three batches of 500
        receiver.answer = 500
        deliver(app, rounds=3)
        failed = [r for r in receiver.requests if r["status"] == 500]
        assert failed, "the receiver was tried while it failed"
        with app.app_context():
            destination = db.session.get(StreamDestination, created["id"])
            assert destination.state == "failing" and "HTTP 500" in destination.last_error
            assert lag(destination)[0] >= 1200
        receiver.answer = 200
        time.sleep(0.3)  # past the (shortened) backoff
        deliver(app)

    delivered = [event["event_id"] for event in receiver.events()]
    assert [e for e in delivered if e in set(expected)] == expected  # every event, in link order, once each
    for request in receiver.accepted():
        assert verify_signature(created["secret"], request["body"], request["headers"]["X-Audit-Signature"])
        assert request["headers"]["Authorization"] == "Splunk abc"
        assert request["headers"]["Content-Type"] == "application/x-ndjson"
    # Retries of the first batch kept its delivery id: the receiver can drop a repeat.
    first_id = receiver.accepted()[0]["headers"]["X-Audit-Delivery"]
    assert {r["headers"]["X-Audit-Delivery"] for r in failed} == {first_id}
    assert len({r["headers"]["X-Audit-Delivery"] for r in receiver.accepted()}) == len(receiver.accepted())
    state = client.get(f"/api/v1/streams/{created['id']}", headers=admin_headers).json["data"]
    assert (state["state"], state["lag_events"], state["last_error"]) == ("active", 0, None)


def test_a_file_destination_writes_ndjson_lines_for_the_filtered_events_and_rotates(app, client, admin_headers,
                                                                                     tmp_path):
    app.config.update(STREAM_FILE_ROTATE_BYTES=20_000, STREAM_BATCH_SIZE=30)
    add(client, admin_headers, name="file", kind="file", path="siem/audit.ndjson", format="ecs", start="beginning",
        filters={"action_type": "login_failed"})
    expected = record_events(app, 300)[1::3]  # every third event is a failed login
    deliver(app)
    directory = tmp_path / "streams" / "siem"
    files = sorted(directory.iterdir(), key=lambda p: (p.name != "audit.ndjson", p.name), reverse=True)
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    assert len(files) > 1  # rotated: audit.ndjson.1 ...
    assert [doc["event"]["id"] for doc in lines] == expected
    assert {doc["event"]["action"] for doc in lines} == {"login_failed"}


def test_start_now_skips_the_stored_trail(app, client, admin_headers, tmp_path):
    before = record_events(app, 5)
    add(client, admin_headers, name="file", kind="file", path="now.ndjson")
    later = record_events(app, 3)
    deliver(app)
    items = [json.loads(line) for line in (tmp_path / "streams" / "now.ndjson").read_text().splitlines()]
    delivered = [item["event_id"] for item in items]
    assert not set(before) & set(delivered)
    assert [e for e in delivered if e in set(later)] == later
    assert items[0]["action_type"] == "STREAM_CREATE"  # the destination's own creation comes after "now"


def test_one_dispatcher_per_destination(app, client, admin_headers, tmp_path):
    created = add(client, admin_headers, name="file", kind="file", path="one.ndjson")
    ids = record_events(app, 10)
    with app.app_context():
        other = DestinationLock(created["id"])
        assert other.acquire()  # another worker holds the destination
        try:
            assert deliver(app) == 0
            assert not (tmp_path / "streams" / "one.ndjson").exists()
        finally:
            other.release()
    assert deliver(app) >= 10
    delivered = [json.loads(line)["event_id"] for line in (tmp_path / "streams" / "one.ndjson").read_text().splitlines()]
    assert [e for e in delivered if e in set(ids)] == ids


def test_a_paused_destination_waits_and_resumes_where_it_stopped(app, client, admin_headers, tmp_path):
    created = add(client, admin_headers, name="file", kind="file", path="p.ndjson")
    client.post(f"/api/v1/streams/{created['id']}/pause", headers=admin_headers)
    ids = record_events(app, 4)
    assert deliver(app) == 0
    paused = client.get(f"/api/v1/streams/{created['id']}", headers=admin_headers).json["data"]
    assert paused["state"] == "paused" and paused["lag_events"] >= 4 and paused["lag_seconds"] >= 0
    client.post(f"/api/v1/streams/{created['id']}/resume", headers=admin_headers)
    dispatcher = Dispatcher(app)
    try:
        assert dispatcher.round() >= 4
    finally:
        dispatcher.close()
    lines = (tmp_path / "streams" / "p.ndjson").read_text().splitlines()
    delivered = [json.loads(line)["event_id"] for line in lines]
    assert [e for e in delivered if e in set(ids)] == ids


def test_an_unexpected_error_is_shown_on_the_destination_and_retried(app, client, admin_headers, tmp_path,
                                                                     monkeypatch):
    from audit_portal.audit.streams import dispatcher

    created = add(client, admin_headers, name="file", kind="file", path="e.ndjson")
    ids = record_events(app, 5)

    def broken(*args):
        raise RuntimeError("transport bug")

    monkeypatch.setattr(dispatcher, "append_lines", broken)
    assert deliver(app) == 0
    failing = client.get(f"/api/v1/streams/{created['id']}", headers=admin_headers).json["data"]
    assert failing["state"] == "failing" and failing["last_error"] == "RuntimeError: transport bug"
    assert failing["lag_events"] >= 5
    monkeypatch.undo()
    time.sleep(0.3)  # past the backoff
    deliver(app)
    delivered = [json.loads(line)["event_id"] for line in (tmp_path / "streams" / "e.ndjson").read_text().splitlines()]
    assert [e for e in delivered if e in set(ids)] == ids


def test_a_redirect_is_not_a_delivery(app, client, admin_headers):
    """Following it would turn the POST into a GET without its body, and carry the headers to another host."""
    with WebhookReceiver() as receiver:
        created = add(client, admin_headers, name="hook", kind="webhook", url=receiver.url)
        record_events(app, 3)
        receiver.answer = 302
        deliver(app, rounds=2)
        state = client.get(f"/api/v1/streams/{created['id']}", headers=admin_headers).json["data"]
    assert state["state"] == "failing" and "HTTP 302" in state["last_error"] and state["lag_events"] >= 3
    assert all(r["headers"].get("X-Audit-Delivery") for r in receiver.requests)  # only POSTs to the hook


def test_changing_filters_rebuilds_a_pending_batch_under_a_new_delivery_id(app, client, admin_headers):
    with WebhookReceiver() as receiver:
        created = add(client, admin_headers, name="hook", kind="webhook", url=receiver.url,
                      filters={"action_type": "login_failed"})
        ids = record_events(app, 9)
        receiver.answer = 500
        deliver(app, rounds=1)
        first_id = receiver.requests[0]["headers"]["X-Audit-Delivery"]
        client.patch(f"/api/v1/streams/{created['id']}", json={"filters": {}}, headers=admin_headers)
        receiver.answer = 200
        deliver(app)
    [accepted] = [r for r in receiver.accepted() if r["headers"]["X-Audit-Delivery"] != first_id][:1] or [None]
    assert accepted is not None, "the batch went again under a new delivery id"
    delivered = [e["event_id"] for e in receiver.events()]
    assert [e for e in delivered if e in set(ids)] == ids  # the events the change added are in it


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="the advisory lock is PostgreSQL's")
def test_a_lock_lost_with_its_connection_is_noticed_and_taken_again(app, client, admin_headers):
    created = add(client, admin_headers, name="file", kind="file", path="l.ndjson")
    dispatcher = Dispatcher(app)
    try:
        dispatcher.round()
        lock, _ = dispatcher.held[created["id"]]
        backend = lock._connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with app.app_context(), db.engine.connect() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend)})")
        assert not lock.alive()
        dispatcher.round()
        again, _ = dispatcher.held[created["id"]]
        assert again is not lock and again.alive()
    finally:
        dispatcher.close()


@pytest.mark.parametrize("fmt", ["json", "ecs", "cef"])
def test_an_event_that_cannot_be_formatted_goes_as_a_fallback_and_holds_nothing_back(app, client, admin_headers,
                                                                                    tmp_path, monkeypatch, fmt):
    """A formatting bug hit by one event: that event arrives as a small message carrying its id and the problem,
    every other event arrives as usual, and the destination says what happened."""
    from audit_portal.audit.streams import formats

    created = add(client, admin_headers, name="file", kind="file", path="f.ndjson", format=fmt)
    ids = record_events(app, 6)
    real = formats.FORMATTERS[fmt]

    def fails_on_the_third(log):
        if log.event_id == ids[2]:
            raise ValueError("a value nobody foresaw")
        return real(log)

    monkeypatch.setitem(formats.FORMATTERS, fmt, fails_on_the_third)
    deliver(app)
    lines = (tmp_path / "streams" / "f.ndjson").read_text().splitlines()
    mine = [line for line in lines if any(event_id in line for event_id in ids)]
    assert len(mine) == 6 and all(ids[i] in mine[i] for i in range(6))  # every event, in order
    fallback = mine[2]
    assert "ValueError: a value nobody foresaw" in fallback
    if fmt == "cef":
        assert fallback.startswith("CEF:0|") and "|Event could not be formatted|" in fallback
    else:
        parsed = json.loads(fallback)
        assert (parsed.get("event_id") or parsed["event"]["id"]) == ids[2]
        assert "ValueError" in (parsed.get("format_error") or parsed["error"]["message"])
    item = client.get(f"/api/v1/streams/{created['id']}", headers=admin_headers).json["data"]
    assert item["state"] == "active" and item["lag_events"] == 0
    assert item["last_error"].startswith("1 event(s) could not be formatted") and ids[2] in item["last_error"]


def test_an_action_this_version_does_not_know_is_still_delivered_in_every_format(app, client, admin_headers,
                                                                                tmp_path):
    """A row written by a newer version (or by hand) with an action_type missing from ActionType."""
    for fmt in ("json", "ecs", "cef"):
        add(client, admin_headers, name=f"file-{fmt}", kind="file", path=f"u-{fmt}.ndjson", format=fmt)
    future = build_event(ActionType.LOGIN, ResourceType.SESSION, 1, "from a newer version", timestamp=utcnow())
    future["action_type"] = "FUTURE_ACTION"
    with app.app_context():
        with db.engine.begin() as connection:
            insert_ignoring_duplicates(connection, [future])
        seal()
        db.session.remove()
    ids = [future["event_id"], *record_events(app, 1)]
    deliver(app)
    for fmt in ("json", "ecs", "cef"):
        text = (tmp_path / "streams" / f"u-{fmt}.ndjson").read_text()
        line = next(line for line in text.splitlines() if ids[0] in line)
        assert "could not be formatted" not in line and ids[1] in text
        if fmt == "ecs":
            event = json.loads(line)["event"]
            assert event["action"] == "future_action" and event["category"] == ["host"] and event["type"] == ["info"]


def test_a_batch_too_large_for_the_receiver_is_split_until_it_fits(app, client, admin_headers):
    """A receiver that refuses bodies over a size (nginx's client_max_body_size answers 413) gets smaller batches,
    every event in link order, each batch signed and under a delivery id of its own."""
    app.config["STREAM_BATCH_SIZE"] = 40
    with WebhookReceiver() as receiver:
        receiver.max_lines = 7
        created = add(client, admin_headers, name="hook", kind="webhook", url=receiver.url)
        ids = record_events(app, 60)
        deliver(app)
        accepted = receiver.accepted()
        assert all(r["body"].count(b"\n") <= 7 for r in accepted)
        delivered = [json.loads(line)["event_id"] for r in accepted for line in r["body"].splitlines()]
        assert [e for e in delivered if e in set(ids)] == ids
        assert len({r["headers"]["X-Audit-Delivery"] for r in accepted}) == len(accepted)
        assert all(verify_signature(created["secret"], r["body"], r["headers"]["X-Audit-Signature"]) for r in accepted)
        assert any(r["status"] == 413 for r in receiver.requests)
        state = client.get(f"/api/v1/streams/{created['id']}", headers=admin_headers).json["data"]
        assert state["state"] == "active" and state["lag_events"] == 0 and state["last_error"] is None


def test_a_single_event_too_large_for_the_receiver_fails_the_destination_saying_so(app, client, admin_headers):
    with WebhookReceiver() as receiver:
        receiver.max_lines = 0
        created = add(client, admin_headers, name="hook", kind="webhook", url=receiver.url)
        record_events(app, 3)
        deliver(app)
        assert not receiver.accepted()
        state = client.get(f"/api/v1/streams/{created['id']}", headers=admin_headers).json["data"]
        assert state["state"] == "failing" and state["lag_events"] >= 3
        assert state["last_error"].endswith("(one event is larger than the receiver accepts)")
