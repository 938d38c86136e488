"""``/api/v1/streams/`` (``audit_portal/audit/web/streams_api.py`` and ``streams/service.py``): destinations
managed by admins, bad input answered with a 422 naming the field, every change audited without secrets."""

from __future__ import annotations

import json
import re

import pytest
import trustme

from audit_portal.audit.delivery.webhook import verify as verify_signature

from .conftest import deliver, record_events
from .receivers import WebhookReceiver

URL = "/api/v1/streams/"


def create(client, auth_headers, **payload):
    return client.post(URL, json=payload, headers=auth_headers)


def test_only_admins(client, app, make_user):
    from tests.api_helpers import bearer, make_token

    assert client.get(URL).status_code == 401
    assert client.get(URL, headers=bearer(make_token(app, make_user("bob")))).status_code == 403


def test_a_webhooks_secret_is_shown_once_and_header_values_never(client, admin_headers, audit_rows):
    created = create(client, admin_headers, name="splunk", kind="webhook", url="https://siem.example.com/hook",
                     headers={"Authorization": "Splunk 1234-secret"}, filters={"category": "security"})
    assert created.status_code == 201, created.json
    item = created.json["data"]
    assert item["secret"].startswith("whsec_") and item["headers"] == ["Authorization"]
    assert (item["kind"], item["format"], item["state"], item["filters"]) == ("webhook", "json", "active",
                                                                             {"category": "security"})
    shown = client.get(f"{URL}{item['id']}", headers=admin_headers).json["data"]
    assert "secret" not in shown and shown["headers"] == ["Authorization"]
    listed = client.get(URL, headers=admin_headers).json["data"]
    assert [d["name"] for d in listed] == ["splunk"] and "1234-secret" not in str(listed)
    [event] = audit_rows(action_type="STREAM_CREATE")
    assert event.category == "audit" and event.resource_type == "STREAM" and event.is_sensitive
    assert event.event_metadata["new"]["header_names"] == ["Authorization"]
    assert "1234-secret" not in str(event.event_metadata) and item["secret"] not in str(event.event_metadata)


def test_rotating_a_secret_shows_the_new_one_once(client, admin_headers, audit_rows):
    item = create(client, admin_headers, name="hook", kind="webhook", url="http://127.0.0.1:9/x").json["data"]
    rotated = client.post(f"{URL}{item['id']}/rotate-secret", headers=admin_headers)
    assert rotated.status_code == 200 and rotated.json["data"]["secret"] not in (None, item["secret"])
    assert [e.description for e in audit_rows(action_type="STREAM_UPDATE")] == [
        "Signing secret of stream destination hook rotated"]
    syslog = create(client, admin_headers, name="sys", kind="syslog", url="tcp://127.0.0.1:514").json["data"]
    refused = client.post(f"{URL}{syslog['id']}/rotate-secret", headers=admin_headers)
    assert refused.status_code == 422 and "kind" in refused.json["errors"]


def test_patch_pause_resume_delete_are_audited_with_old_and_new(client, admin_headers, audit_rows):
    item = create(client, admin_headers, name="sys", kind="syslog", url="tcp://127.0.0.1:514").json["data"]
    patched = client.patch(f"{URL}{item['id']}", json={"format": "cef", "filters": {"severity": "critical"}},
                           headers=admin_headers)
    assert patched.status_code == 200 and patched.json["data"]["format"] == "cef"
    assert client.post(f"{URL}{item['id']}/pause", headers=admin_headers).json["data"]["state"] == "paused"
    assert client.post(f"{URL}{item['id']}/resume", headers=admin_headers).json["data"]["state"] == "active"
    assert client.delete(f"{URL}{item['id']}", headers=admin_headers).status_code == 200
    assert client.get(f"{URL}{item['id']}", headers=admin_headers).status_code == 404
    updates = audit_rows(action_type="STREAM_UPDATE")
    assert updates[0].event_metadata["old"] == {"format": "json", "filters": {}}
    assert updates[0].event_metadata["new"] == {"format": "cef", "filters": {"severity": "critical"}}
    assert [e.event_metadata["new"] for e in updates[1:]] == [{"paused": True}, {"paused": False}]
    assert len(audit_rows(action_type="STREAM_DELETE")) == 1


@pytest.mark.parametrize("payload, field", [
    ({"name": "x", "kind": "kafka", "url": "tcp://h:1"}, "kind"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "format": "xml"}, "format"),
    ({"name": "x", "kind": "webhook", "url": "http://siem.example.com/hook"}, "url"),
    ({"name": "x", "kind": "webhook", "url": "ftp://127.0.0.1/x"}, "url"),
    ({"name": "x", "kind": "syslog", "url": "tcp://127.0.0.1:70000"}, "url"),
    ({"name": "x", "kind": "syslog", "url": "udp://127.0.0.1:514"}, "url"),
    ({"name": "x", "kind": "syslog"}, "url"),
    ({"name": "x", "kind": "file", "path": "../outside.ndjson"}, "path"),
    ({"name": "x", "kind": "file", "path": "/etc/passwd"}, "path"),
    ({"name": "x", "kind": "file", "url": "tcp://h:1", "path": "a"}, "url"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "filters": {"status": "MAYBE"}}, "filters"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "filters": {"colour": "red"}}, "filters"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "filters": {"ip_address": "10.0.0.300"}}, "filters"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "filters": {"username": "x" * 65}}, "filters"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "headers": {"A": "b"}}, "headers"),
    ({"name": "x", "kind": "webhook", "url": "https://h/x", "headers": {"X-Audit-Signature": "forged"}}, "headers"),
    ({"name": "x", "kind": "webhook", "url": "https://h/x", "headers": {"Bad Name": "v"}}, "headers"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "start": "yesterday"}, "start"),
    ({"name": "", "kind": "syslog", "url": "tcp://h:1"}, "name"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "colour": "red"}, "colour"),
    # input that could only fail later (at delivery) is refused now too
    ({"name": "x", "kind": "webhook", "url": "https://siem.example.com/hook", "headers": {"X-A": "t€"}}, "headers"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "filters": {"search": 5}}, "filters"),
    ({"name": "x", "kind": "syslog", "url": "tcp://h:1", "filters": {"search": None}}, "filters"),
    ({"name": "x", "kind": "webhook", "url": "https://siem.example.com/a b"}, "url"),
    ({"name": "x", "kind": "webhook", "url": "https://user:hunter2@siem.example.com/hook"}, "url"),
    ({"name": "x", "kind": "syslog", "url": "tcp://127.0.0.1:0"}, "url"),
    ({"name": "x", "kind": "syslog", "url": f"tcp://{'a' * 64}.example.com:514"}, "url"),
    ({"name": "x", "kind": "file", "path": "."}, "path"),
    ({"name": "x\n", "kind": "syslog", "url": "tcp://h:1"}, "name"),
])
def test_bad_input_is_a_422_naming_the_field(client, admin_headers, payload, field):
    response = create(client, admin_headers, **payload)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json


def test_a_destination_filtered_by_ip_address_and_username_gets_only_those_events(app, client, admin_headers,
                                                                                   tmp_path):
    created = create(client, admin_headers, name="one-client", kind="file", path="client.ndjson", start="beginning",
                     filters={"ip_address": "2001:DB8::7", "username": "user3"})
    assert created.status_code == 201, created.json
    assert created.json["data"]["filters"] == {"ip_address": "2001:DB8::7", "username": "user3"}
    record_events(app, 14, ip_address="192.0.2.7")  # usernames user0..user6: user3 among them, other address
    wanted = record_events(app, 14, ip_address="2001:db8::7")[3::7]  # user3's events from that address
    deliver(app)
    lines = (tmp_path / "streams" / "client.ndjson").read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == wanted


def test_a_name_is_unique(client, admin_headers):
    assert create(client, admin_headers, name="siem", kind="syslog", url="tcp://h:1").status_code == 201
    again = create(client, admin_headers, name="SIEM", kind="file", path="a.ndjson")
    assert again.status_code == 422 and "name" in again.json["errors"]


def test_the_test_message_reaches_a_webhook_or_names_the_url(client, admin_headers, audit_rows):
    with WebhookReceiver() as receiver:
        item = create(client, admin_headers, name="hook", kind="webhook", url=receiver.url).json["data"]
        assert client.post(f"{URL}{item['id']}/test", headers=admin_headers).status_code == 200
        [request] = receiver.requests
        assert verify_signature(item["secret"], request["body"], request["headers"]["X-Audit-Signature"])
        assert b"Test message for stream destination hook" in request["body"]
        receiver.answer = 503
        failed = client.post(f"{URL}{item['id']}/test", headers=admin_headers)
    assert failed.status_code == 422 and "HTTP 503" in failed.json["errors"]["url"][0]
    assert any("Test message sent" in e.description for e in audit_rows(action_type="STREAM_UPDATE"))


# -- the same rules from the command line (audit/cli.py: flask streams ...) ----------------------------------------


def test_the_cli_adds_lists_pauses_and_removes(app, runner, tmp_path, audit_rows):
    added = runner.invoke(args=["streams", "add", "--name", "siem", "--kind", "webhook", "--url",
                                "https://siem.example.com/hook", "--format", "ecs", "--filter", "category=security",
                                "--header", "Authorization=Splunk abc"])
    assert added.exit_code == 0, added.output
    assert "Signing secret (shown once): whsec_" in added.output
    listed = runner.invoke(args=["streams", "list"])
    assert "siem" in listed.output and "webhook" in listed.output and "active" in listed.output
    assert "Splunk abc" not in listed.output
    assert runner.invoke(args=["streams", "pause", "siem"]).exit_code == 0
    assert "paused" in runner.invoke(args=["streams", "list"]).output
    assert runner.invoke(args=["streams", "resume", "siem"]).exit_code == 0
    assert runner.invoke(args=["streams", "remove", "siem"]).exit_code == 0
    assert "No stream destinations." in runner.invoke(args=["streams", "list"]).output
    assert [e.action_type for e in audit_rows(resource_type="STREAM")] == [
        "STREAM_CREATE", "STREAM_UPDATE", "STREAM_UPDATE", "STREAM_DELETE"]


def test_the_cli_refuses_bad_input_naming_the_option(runner):
    bad = runner.invoke(args=["streams", "add", "--name", "x", "--kind", "file", "--path", "../x"])
    assert bad.exit_code == 2 and "--path" in bad.output
    bad = runner.invoke(args=["streams", "add", "--name", "x", "--kind", "syslog", "--url", "tcp://h:1",
                              "--filter", "nonsense"])
    assert bad.exit_code == 2 and "--filter: expected key=value" in bad.output
    assert "There is no stream destination called 'nope'." in runner.invoke(args=["streams", "pause", "nope"]).output


def test_two_file_destinations_cannot_share_a_file(client, admin_headers):
    assert create(client, admin_headers, name="a", kind="file", path="x/audit.ndjson").status_code == 201
    again = create(client, admin_headers, name="b", kind="file", path="x/../x/audit.ndjson")
    assert again.status_code == 422 and "Another destination writes that file." in again.json["errors"]["path"]


def test_a_ca_file_can_be_set_on_a_tls_destination_alone(client, admin_headers, tmp_path):
    ca_file = tmp_path / "siem-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    item = create(client, admin_headers, name="tls", kind="syslog", url="tls://siem.example.com:6514").json["data"]
    patched = client.patch(f"{URL}{item['id']}", json={"ca_file": str(ca_file)}, headers=admin_headers)
    assert patched.status_code == 200, patched.json


def test_a_header_change_records_which_headers_changed_never_their_values(client, admin_headers, audit_rows):
    item = create(client, admin_headers, name="hook", kind="webhook", url="https://siem.example.com/hook",
                  headers={"Authorization": "Splunk old-token"}).json["data"]
    client.patch(f"{URL}{item['id']}", json={"headers": {"Authorization": "Splunk new-token"}}, headers=admin_headers)
    [update] = audit_rows(action_type="STREAM_UPDATE")
    assert update.event_metadata["changed_headers"] == ["Authorization"]
    assert "old-token" not in str(update.event_metadata) and "new-token" not in str(update.event_metadata)


def test_a_purge_warns_about_destinations_that_have_not_received_what_it_deletes(app, runner, client, admin_headers):
    from .conftest import record_events

    item = create(client, admin_headers, name="late", kind="file", path="late.ndjson").json["data"]
    client.post(f"{URL}{item['id']}/pause", headers=admin_headers)
    record_events(app, 5)
    result = runner.invoke(args=["audit", "purge", "--older-than-days", "0", "--dry-run"])
    assert result.exit_code == 0, result.output
    warning = re.search(r"Warning: stream destination late has not been sent up to (\d+) of these events", result.output)
    assert warning and int(warning.group(1)) >= 5
