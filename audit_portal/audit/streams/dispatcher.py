"""Delivering a destination's events: in link order (``audit_chain.seq``), at least once, nothing skipped.

A destination's cursor is the last link it has delivered. Each batch is the next ``STREAM_BATCH_SIZE`` links
after it (the events among them that match the destination's filters); the cursor moves past the batch only
once the receiver took it: a 2xx for a webhook (a retry resends the same links under the same delivery id), the
bytes written for a file. Syslog over TCP has no acknowledgement, so the cursor moves when the bytes are sent,
and ``resend_seq`` trails it by at least the last batch and STREAM_RESEND_SECONDS: after a connection error, or
when another process takes the destination over, delivery starts again from there. Receivers may see an event
twice (each message carries ``event_id``); they never miss one that is in the chain. A webhook receiver that
refuses a batch as too large (413) gets its first half instead, and shorter batches after it.

One dispatcher per destination at a time (``locks.py``); it keeps the destinations it holds until it stops.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque, namedtuple
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from ...extensions import db
from ...timeutil import utcnow
from ..delivery.backoff import delay
from ..delivery.webhook import DeliveryFailed
from ..read.query import AuditFilters, apply_filters
from ..read.schemas import AuditLogFilterSchema
from ..record.models import AuditChainLink, AuditLog
from .formats import format_event
from .models import ERROR_MAX, StreamDestination, StreamKind
from .transports import SyslogSender, append_lines, send_webhook, syslog_message

log = logging.getLogger(__name__)
#: An event's columns under the model's attribute names (the ``metadata`` column is ``event_metadata``).
_EVENT_COLUMNS = [column.label("event_metadata") if column.name == "metadata" else column
                  for column in AuditLog.__table__.columns]
#: A batch's event: its columns by attribute name, as a named tuple (reading a field of one is several times
#: cheaper than of a SQLAlchemy row, and a stream reads every field of every event).
EventRow = namedtuple("EventRow", [*(column.name for column in _EVENT_COLUMNS), "link_seq"])


@dataclass
class Settings:
    batch: int
    resend_s: float
    max_backoff_s: float
    syslog_max_bytes: int
    file_dir: Path
    rotate_bytes: int

    @classmethod
    def from_config(cls, config) -> Settings:
        return cls(max(1, config["STREAM_BATCH_SIZE"]), config["STREAM_RESEND_SECONDS"], config["STREAM_MAX_BACKOFF_SECONDS"],
                   config["STREAM_SYSLOG_MAX_BYTES"], Path(config["AUDIT_STREAM_FILE_DIR"]),
                   config["STREAM_FILE_ROTATE_BYTES"])


def destination_filters(destination: StreamDestination) -> AuditFilters:
    return AuditLogFilterSchema().load(destination.filters or {})


def lag(destination: StreamDestination) -> tuple[int, float]:
    """(links not delivered yet, seconds since the oldest of them happened; 0 when caught up)."""
    chain = AuditChainLink.__table__
    behind = db.session.scalar(select(func.count()).select_from(chain).where(chain.c.seq > destination.cursor_seq))
    if not behind:
        return 0, 0.0
    oldest = db.session.scalar(select(AuditLog.timestamp).join(chain, chain.c.audit_log_id == AuditLog.id)
                               .where(chain.c.seq > destination.cursor_seq).order_by(chain.c.seq).limit(1))
    return behind, max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0


class Delivery:
    """Delivers one destination while its lock is held: the sender (a syslog connection) and the recent batches
    (for syslog's resend point) live as long as the dispatcher holds the destination."""

    def __init__(self, destination_id: int, settings: Settings):
        self.destination_id, self.settings = destination_id, settings
        self.syslog: SyslogSender | None = None
        #: (when a batch was sent, the cursor before it): syslog's resend point trails these.
        self.sent: deque[tuple[float, int]] = deque()
        self.started = True  #: the first batch after taking over starts from the resend point
        #: Which destination this state is for (SQLite can give a removed destination's id to a new one).
        self.created_at = None
        self.acknowledged_before = False
        self.format_problems, self.format_problem = 0, ""  #: events of the last batch sent as fallback messages
        #: Links per batch: STREAM_BATCH_SIZE, halved each time a webhook receiver refuses a batch as too large.
        self.batch_links = settings.batch

    def close(self) -> None:
        if self.syslog is not None:
            self.syslog.close()

    def run(self, max_batches: int | None = None) -> int:
        """Deliver batches until caught up, a failure, or ``max_batches``; returns the events delivered."""
        delivered = batches = 0
        while max_batches is None or batches < max_batches:
            destination = db.session.get(StreamDestination, self.destination_id, populate_existing=True)
            if destination is None or destination.paused:
                break
            if destination.next_attempt_at and destination.next_attempt_at > utcnow():
                break
            if self.created_at != destination.created_at:  # first use, or the id names a new destination
                self.close()
                self.syslog, self.sent, self.started = None, deque(), True
                self.created_at = destination.created_at
            sent = self._one_batch(destination)
            db.session.commit()
            if sent is None:
                break
            delivered += sent
            batches += 1
        db.session.remove()
        return delivered

    def _one_batch(self, destination: StreamDestination) -> int | None:
        """Send the next batch; the number of events it held, or None when there was nothing to do or it failed."""
        if destination.kind == StreamKind.SYSLOG and self.started:
            destination.cursor_seq = min(destination.cursor_seq, destination.resend_seq)
        self.started = False
        self.acknowledged_before = False  # an empty batch (all filtered out) sends nothing and learns nothing
        self.format_problems, self.format_problem = 0, ""
        upto = destination.pending_upto_seq or self._window_end(destination)
        if upto is None:
            return None
        events: list[EventRow] = []
        try:
            events = self._events(destination, upto)
            self._send(destination, events, upto)
        except DeliveryFailed as exc:
            if exc.status == 413 and len(events) > 1:  # too large for the receiver: its first half goes next
                self._split(destination, events)
                return 0
            too_large = " (one event is larger than the receiver accepts)" if exc.status == 413 else ""
            self._failed(destination, f"{exc}{too_large}")
            return None
        except Exception as exc:  # noqa: BLE001 - a bug or a database error: shown on the destination, retried later
            log.exception("stream %s: could not deliver a batch", destination.name)
            db.session.rollback()
            destination = db.session.get(StreamDestination, self.destination_id)
            if destination is not None:
                self._failed(destination, f"{type(exc).__name__}: {exc}")
            return None
        before = destination.cursor_seq
        destination.cursor_seq, destination.pending_upto_seq, destination.pending_delivery_id = upto, None, None
        destination.failures, destination.next_attempt_at, destination.last_error = 0, None, None
        destination.last_delivery_at = utcnow()
        if self.format_problems:  # delivered, but not as they should read: say so where admins look
            destination.last_error = (f"{self.format_problems} event(s) could not be formatted and went as fallback "
                                      f"messages; last: {self.format_problem}")[:ERROR_MAX]
        if destination.kind == StreamKind.SYSLOG:
            destination.resend_seq = min(self._resend_point(before), destination.cursor_seq)
        else:
            destination.resend_seq = upto
        return len(events)

    def _split(self, destination: StreamDestination, events: list[EventRow]) -> None:
        """A webhook receiver answered 413 (Payload Too Large): the pending batch becomes its first half, under a
        new delivery id (it is a different body), and later batches are half as long while this dispatcher holds
        the destination. Nothing is skipped: the second half is the start of the next batch."""
        destination.pending_upto_seq = events[len(events) // 2 - 1].link_seq
        destination.pending_delivery_id = str(uuid.uuid4())
        self.batch_links = max(1, min(self.batch_links, len(events)) // 2)
        log.warning("stream %s: the receiver refused a batch of %d events as too large; sending %d",
                    destination.name, len(events), len(events) // 2)

    def _window_end(self, destination: StreamDestination) -> int | None:
        chain = AuditChainLink.__table__
        window = (select(chain.c.seq).where(chain.c.seq > destination.cursor_seq).order_by(chain.c.seq)
                  .limit(self.batch_links).subquery())
        return db.session.scalar(select(func.max(window.c.seq)))

    def _events(self, destination: StreamDestination, upto: int) -> list[EventRow]:
        """The batch's matching events in link order, with the model's attribute names (named tuples, not ORM
        objects: a stream reads every event once, and building objects cost more than formatting them)."""
        chain = AuditChainLink.__table__
        query = (select(*_EVENT_COLUMNS, chain.c.seq).join(chain, chain.c.audit_log_id == AuditLog.id)
                 .where(chain.c.seq > destination.cursor_seq, chain.c.seq <= upto).order_by(chain.c.seq))
        return [EventRow._make(row) for row in db.session.execute(apply_filters(query, destination_filters(destination)))]

    def _send(self, destination: StreamDestination, events: list[AuditLog], upto: int) -> None:
        if not events:
            return
        payload = self._format(destination, events)  # before the commit below expires the loaded events
        if destination.kind == StreamKind.WEBHOOK and destination.pending_upto_seq is None:
            destination.pending_upto_seq, destination.pending_delivery_id = upto, str(uuid.uuid4())
            db.session.commit()  # a retry, in this process or another, resends the same batch under this id
        self._transmit(destination, payload, destination.pending_delivery_id)

    def send_now(self, destination: StreamDestination, events: list[AuditLog]) -> None:
        """Format ``events`` and hand them to the destination's receiver now (raises ``DeliveryFailed``)."""
        self._transmit(destination, self._format(destination, events), str(uuid.uuid4()))

    def _format(self, destination: StreamDestination, events: list) -> list:
        """The events in the destination's format (an event that cannot be formatted goes as a fallback message
        carrying its id, and the problem is kept for ``last_error``)."""
        bodies = []
        self.format_problems = 0
        for event in events:
            body, problem = format_event(destination.format, event)
            if problem is not None:
                self.format_problems += 1
                self.format_problem = f"event {getattr(event, 'event_id', '?')}: {problem}"
                log.error("stream %s: could not format %s", destination.name, self.format_problem)
            bodies.append(body)
        if destination.kind == StreamKind.SYSLOG:
            maximum = self.settings.syslog_max_bytes
            return [syslog_message(event, body, maximum) for event, body in zip(events, bodies, strict=True)]
        return bodies

    def _transmit(self, destination: StreamDestination, payload: list, delivery_id: str | None) -> None:
        if destination.kind == StreamKind.SYSLOG:
            if self.syslog is not None and (self.syslog.url, self.syslog.ca_file) != (destination.url, destination.ca_file):
                self.close()  # the destination was changed: the next connection is to its new receiver
                self.syslog = None
            if self.syslog is None:
                self.syslog = SyslogSender(destination.url, destination.ca_file)
            # Whether every byte sent before this batch was acknowledged (read before the batch adds its own).
            self.acknowledged_before = self.syslog.unacknowledged() == 0
            self.syslog.send(payload)
        elif destination.kind == StreamKind.WEBHOOK:
            send_webhook(destination.url, payload, secret=destination.secret, delivery_id=delivery_id,
                         headers=destination.headers or {}, ca_file=destination.ca_file)
        else:
            append_lines(self.settings.file_dir / destination.path, payload, self.settings.rotate_bytes)

    def _resend_point(self, cursor_before: int) -> int:
        """Where a resend would start: before the oldest batch that may not have arrived. A batch is let go once
        it is older than STREAM_RESEND_SECONDS and the receiver's host has acknowledged every byte sent (a
        receiver that stopped reading keeps them all)."""
        now = time.monotonic()
        self.sent.append((now, cursor_before))
        if not self.acknowledged_before:
            return self.sent[0][1]
        while len(self.sent) > 1 and self.sent[1][0] < now - self.settings.resend_s:
            self.sent.popleft()  # the oldest batch still needed is the one before those sent in the window
        return self.sent[0][1]

    def _failed(self, destination: StreamDestination, error: str) -> None:
        destination.failures += 1
        destination.last_error = error[:ERROR_MAX]
        wait = delay(destination.failures, self.settings.max_backoff_s)
        destination.next_attempt_at = utcnow() + timedelta(seconds=wait)
        if destination.kind == StreamKind.SYSLOG:
            destination.cursor_seq = destination.resend_seq  # what may have been in flight goes again
            self.sent.clear()
        log.warning("stream %s: delivery failed (%s); next attempt in %.1f s", destination.name, error, wait)
