"""TLS to real receivers: syslog over TLS (RFC 5425) to an rsyslog instance with Debian's rsyslog-gnutls driver, and
a webhook over HTTPS, each with a certificate from a test CA (trustme) that the destination names in ``ca_file``.
A receiver whose certificate the CA did not sign gets nothing, and the destination says why."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import trustme

from audit_portal.audit.delivery.webhook import verify as verify_signature

from .conftest import deliver, record_events
from .receivers import RSYSLOGD, Rsyslog, ServerCertificate, WebhookReceiver
from .test_formats import RFC5424


@pytest.fixture
def certificate(tmp_path):
    return ServerCertificate.issue(tmp_path / "pki")


@pytest.fixture
def other_ca(tmp_path):
    """A CA that did not sign the receivers' certificates."""
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def _add(client, headers, **payload):
    response = client.post("/api/v1/streams/", json=payload, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["data"]


def _state(client, headers, destination):
    return client.get(f"/api/v1/streams/{destination['id']}", headers=headers).json["data"]


@pytest.mark.skipif(not shutil.which(RSYSLOGD), reason="rsyslog is installed by scripts/test.sh")
def test_syslog_over_tls_reaches_rsyslog_and_an_unknown_ca_is_refused(app, client, admin_headers, tmp_path,
                                                                      certificate, other_ca):
    rsyslog = Rsyslog(tmp_path / "rsyslog", tls=certificate)
    rsyslog.start()
    try:
        assert rsyslog.url.startswith("tls://127.0.0.1:")
        wrong = _add(client, admin_headers, name="wrong-ca", kind="syslog", url=rsyslog.url, ca_file=str(other_ca))
        right = _add(client, admin_headers, name="tls", kind="syslog", url=rsyslog.url, ca_file=str(certificate.ca),
                     format="cef")
        ids = record_events(app, 30)
        deliver(app)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(rsyslog.messages()) < 30:
            time.sleep(0.1)
        received = [RFC5424.match(f"0 {line}") for line in rsyslog.messages()]
        assert all(received)
        assert [m["event_id"] for m in received if m["event_id"] in set(ids)] == ids  # each once, in order
        assert all(m["msg"].startswith("CEF:0|") for m in received)
        assert _state(client, admin_headers, right)["lag_events"] == 0
        refused = _state(client, admin_headers, wrong)
        assert refused["state"] == "failing" and "CERTIFICATE_VERIFY_FAILED" in refused["last_error"]
        assert refused["lag_events"] >= 30
    finally:
        rsyslog.stop()


def test_a_webhook_over_https_is_delivered_signed_and_an_unknown_ca_is_refused(app, client, admin_headers,
                                                                             certificate, other_ca):
    with WebhookReceiver(tls=certificate) as receiver:
        assert receiver.url.startswith("https://")
        wrong = _add(client, admin_headers, name="wrong-ca", kind="webhook", url=receiver.url, ca_file=str(other_ca))
        right = _add(client, admin_headers, name="https", kind="webhook", url=receiver.url,
                     ca_file=str(certificate.ca))
        ids = record_events(app, 12)
        deliver(app)
        accepted = receiver.accepted()
        assert accepted, "nothing reached the HTTPS receiver"
        delivered = [json.loads(line)["event_id"] for request in accepted for line in request["body"].splitlines()]
        assert [e for e in delivered if e in set(ids)] == ids
        assert all(verify_signature(right["secret"], r["body"], r["headers"]["X-Audit-Signature"]) for r in accepted)
        refused = _state(client, admin_headers, wrong)
        assert refused["state"] == "failing" and "CERTIFICATE_VERIFY_FAILED" in refused["last_error"]
        # Trusting the right CA is a PATCH away; the destination then catches up.
        response = client.patch(f"/api/v1/streams/{wrong['id']}", headers=admin_headers,
                                json={"ca_file": str(certificate.ca)})
        assert response.status_code == 200, response.json
        time.sleep(0.3)  # past the backoff
        deliver(app)
        assert _state(client, admin_headers, wrong)["lag_events"] == 0
        assert len(receiver.accepted()) > len(accepted)


@pytest.mark.parametrize(("payload", "message"), [
    ({"kind": "syslog", "url": "tcp://127.0.0.1:6514", "ca_file": "/etc/ssl/certs/ca-certificates.crt"},
     "Only a tls:// syslog or an https:// webhook destination takes a CA file."),
    ({"kind": "webhook", "url": "https://siem.example.com/hook", "ca_file": "relative/ca.pem"},
     "Must be an absolute path to a PEM file of CA certificates."),
    ({"kind": "syslog", "url": "tls://127.0.0.1:6514", "ca_file": "/nonexistent/ca.pem"}, "No such file."),
    ({"kind": "webhook", "url": "https://siem.example.com/hook", "ca_file": "/etc/hostname"},
     "Not a readable PEM file of CA certificates."),
])
def test_a_ca_file_that_cannot_verify_anything_is_refused_naming_the_field(client, admin_headers, payload, message):
    response = client.post("/api/v1/streams/", headers=admin_headers, json={"name": "n", **payload})
    assert response.status_code == 422
    assert message in str(response.json["errors"]["ca_file"]), response.json
