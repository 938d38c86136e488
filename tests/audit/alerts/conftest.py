"""Alert tests: short intervals, a real SMTP server on loopback (aiosmtpd, started by the test), the webhook
receiver of the stream tests, and events recorded through the app's own services."""

from __future__ import annotations

import time
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from audit_portal.audit.alerts import service
from audit_portal.audit.alerts.runner import AlertRunner
from audit_portal.audit.alerts.schemas import AlertSchema
from audit_portal.extensions import db
from tests.api_helpers import bearer, make_token
from tests.audit.streams.receivers import WebhookReceiver, free_port

WEBHOOK_SECRET = "test-alert-webhook-secret-0123456789"


class SmtpInbox:
    """Every message the SMTP server on loopback accepted, parsed."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@pytest.fixture
def smtp():
    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def receiver():
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def app_config(app_config, smtp, receiver):
    controller, _ = smtp
    return {**app_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": controller.port, "ALERT_EMAIL_TO": "",
            "ALERT_WEBHOOK_URL": receiver.url, "ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "ALERT_EVAL_INTERVAL": 0.5, "ALERT_MAX_BACKOFF_SECONDS": 1, "ALERT_BASE_URL": "http://portal.test"}


@pytest.fixture
def inbox(smtp):
    return smtp[1]


@pytest.fixture
def admin_headers(app, admin_id):
    return bearer(make_token(app, admin_id))


def evaluate(app):
    """One evaluation, as the runner does it (after the background writer has stored what it holds)."""
    assert app.extensions["audit_writer"].flush()
    runner = AlertRunner(app)
    try:
        result = runner.round()
    finally:
        runner.close()
    assert result is not None, "another evaluator held the lock"
    return result


def alerts(app, rule: str | None = None) -> list[dict]:
    """The alerts (open first) as the API shows them."""
    with app.app_context():
        items = AlertSchema(many=True).dump(service.list_alerts(rule=rule))
        db.session.remove()
    return items
