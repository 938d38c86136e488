"""Alert notifications: queued in the ``alert_notifications`` outbox in the transaction that opens, regrows or
resolves an alert, then sent by the evaluator's loop, by email (SMTP) and by a signed webhook. A failed send
is retried with backoff, under the same delivery id (webhook ``X-Audit-Delivery``, email ``Message-ID``), so
a receiver that was down gets each notification once it is back."""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select, update

from ...extensions import db
from ...timeutil import utcnow
from ..delivery import webhook
from ..delivery.backoff import delay
from ..delivery.webhook import DeliveryFailed
from ..record.actors import directory
from ..record.events import single_line
from .models import ERROR_MAX, Alert, AlertNotification, Channel, NotificationEvent
from .schemas import AlertSchema

log = logging.getLogger(__name__)
SMTP_TIMEOUT_S = 10
#: Notifications sent per pass (the rest wait for the next one).
BATCH = 50
_VERBS = {NotificationEvent.OPENED: "opened", NotificationEvent.RENOTIFY: "still growing",
          NotificationEvent.RESOLVED: "resolved"}


def channels(config) -> list[str]:
    """The channels that are set up: email when SMTP_HOST is set, a webhook when ALERT_WEBHOOK_URL is."""
    out = []
    if config["SMTP_HOST"]:
        out.append(Channel.EMAIL.value)
    if config["ALERT_WEBHOOK_URL"]:
        out.append(Channel.WEBHOOK.value)
    return out


def link(alert: Alert) -> str:
    """The alert's events, as an absolute link when ALERT_BASE_URL says where the portal is."""
    return current_app.config["ALERT_BASE_URL"].rstrip("/") + alert.events_url


def queue(alert: Alert, event: NotificationEvent, now: datetime | None = None) -> None:
    """Add a notification of ``event`` for every channel that is set up (in the caller's transaction)."""
    now = now or utcnow()
    group = f" for {single_line(alert.group, 80)}" if alert.group else ""  # a typed name may hold line breaks
    subject = (f"[audit_portal] {alert.severity} {alert.rule.name}{group}: {_VERBS[event]} "
               f"({alert.count} event{'s' if alert.count != 1 else ''})")[:255]
    item = {**AlertSchema().dump(alert), "event": event.value, "link": link(alert)}
    for channel in channels(current_app.config):
        db.session.add(AlertNotification(alert_id=alert.id, channel=channel, event=event.value,
                                         delivery_id=str(uuid.uuid4()), subject=subject, body=item,
                                         next_attempt_at=now))
    if event != NotificationEvent.RESOLVED:
        alert.notified_at, alert.notified_count = now, alert.count


@dataclass(frozen=True)
class Due:
    """A notification to send, read out of its row: no transaction stays open while it goes over the network."""

    id: int
    channel: str
    event: str
    delivery_id: str
    subject: str
    body: dict
    attempts: int


def send_due(now: datetime | None = None) -> int:
    """Send the notifications that are due, each outcome recorded in a short transaction of its own (none is
    open while a mail server or receiver answers). A notification that fails, for any reason, is retried
    with backoff and never holds up the others. Returns how many were sent."""
    config = current_app.config
    now = now or utcnow()
    due = [Due(n.id, n.channel, n.event, n.delivery_id, n.subject, dict(n.body), n.attempts)
           for n in db.session.scalars(select(AlertNotification).where(
               AlertNotification.sent_at.is_(None), AlertNotification.next_attempt_at <= now)
               .order_by(AlertNotification.id).limit(BATCH))]
    db.session.commit()
    sent = 0
    for item in due:
        try:
            _send(item, config)
        except Exception as exc:  # noqa: BLE001 - a refusal, a network error or a bug: retried, never blocking
            error = exc if isinstance(exc, DeliveryFailed) else f"{type(exc).__name__}: {exc}"
            wait = delay(item.attempts + 1, config["ALERT_MAX_BACKOFF_SECONDS"])
            db.session.execute(update(AlertNotification).where(AlertNotification.id == item.id).values(
                attempts=item.attempts + 1, last_error=_without_url(str(error), config)[:ERROR_MAX],
                next_attempt_at=utcnow() + timedelta(seconds=wait)))
            log.warning("alert notification %s by %s failed (%s); next attempt in %.1f s", item.delivery_id,
                        item.channel, _without_url(str(error), config), wait)
        else:
            db.session.execute(update(AlertNotification).where(AlertNotification.id == item.id)
                               .values(sent_at=utcnow(), last_error=None))
            sent += 1
        db.session.commit()
    return sent


def _without_url(text: str, config) -> str:
    """``text`` with the webhook URL cut to its origin (a Slack-style URL carries its secret in the path)."""
    url = config["ALERT_WEBHOOK_URL"]
    if not url:
        return text
    parts = urlsplit(url)
    return text.replace(url, f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…")


def _send(item: Due, config) -> None:
    if item.channel == Channel.WEBHOOK.value:
        body = json.dumps(item.body, ensure_ascii=False, separators=(",", ":")).encode()
        webhook.post(config["ALERT_WEBHOOK_URL"], body, secret=config["ALERT_WEBHOOK_SECRET"],
                     delivery_id=item.delivery_id, content_type="application/json")
    else:
        send_email(item, config)


def recipients(config) -> list[str]:
    configured = [a.strip() for a in config["ALERT_EMAIL_TO"].split(",") if a.strip()]
    return configured or directory().admin_emails()


def send_email(notification: Due, config) -> None:
    to = recipients(config)
    if not to:
        raise DeliveryFailed("no recipient: set ALERT_EMAIL_TO, or give an active admin an email address")
    item = notification.body
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = notification.subject, config["ALERT_EMAIL_FROM"], ", ".join(to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{notification.delivery_id}@audit-portal>"  # the same on every retry
    message.set_content(
        f"Rule: {item['rule']} ({item['severity']})\n"
        f"Group: {single_line(item['group'], 200) if item['group'] else '-'}\n"
        f"Count: {item['count']} (first seen {item['first_seen']}, last seen {item['last_seen']})\n"
        f"State: {item['state']} ({notification.event})\n"
        f"Events: {item['link']}\n")
    try:
        with smtplib.SMTP(config["SMTP_HOST"], int(config["SMTP_PORT"]), timeout=SMTP_TIMEOUT_S) as smtp:
            if config["SMTP_STARTTLS"]:
                smtp.starttls(context=ssl.create_default_context())  # verified: smtplib's own default is not
            if config["SMTP_USERNAME"]:
                smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"SMTP {config['SMTP_HOST']}:{config['SMTP_PORT']}: {exc}") from None
