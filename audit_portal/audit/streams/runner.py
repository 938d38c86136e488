"""Running the dispatcher: a loop over the destinations this process can lock, in the app's background (one
thread per process, STREAM_DISPATCH_IN_APP) or in its own process (``flask streams run``). Both are safe
together: a destination has one dispatcher at a time, whichever took its lock first."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select

from ...database import unpooled_engine
from ...extensions import db
from ..delivery.background import BackgroundThread
from ..delivery.locks import STREAM_DESTINATION, WorkerLock
from ..integrity.seal import seal_in_background
from .dispatcher import Delivery, Settings
from .models import StreamDestination

log = logging.getLogger(__name__)
#: Batches one destination may send per round, so that one with a backlog does not starve the others.
BATCHES_PER_ROUND = 20


class DestinationLock(WorkerLock):
    """Held by a destination's one dispatcher."""

    def __init__(self, destination_id: int, engine=None):
        super().__init__(STREAM_DESTINATION, destination_id, f"stream-{destination_id}.lock", engine)


class Dispatcher:
    """Holds the destinations it locked and delivers them, a round at a time."""

    def __init__(self, app):
        self.app = app
        self.settings = Settings.from_config(app.config)
        self.held: dict[int, tuple[DestinationLock, Delivery]] = {}
        self._lock_engine = None
        #: Seal at most once per STREAM_POLL_SECONDS: a dispatcher with a backlog runs round after round, and
        #: each seal pass re-reads the late-commit window (docs/performance.md).
        self._seal_every = app.config["STREAM_POLL_SECONDS"]
        self._last_seal = float("-inf")

    def round(self) -> int:
        """Seal what is committed, take the destinations nobody holds, deliver; returns events delivered."""
        delivered = 0
        with self.app.app_context():
            wanted = set(db.session.scalars(select(StreamDestination.id).where(StreamDestination.paused.is_(False))))
            db.session.remove()
            if not wanted and not self.held:
                return 0
            for destination_id in set(self.held) - wanted:
                self._let_go(destination_id)
            for destination_id, (lock, _) in list(self.held.items()):
                if not lock.alive():  # lost with its connection: another dispatcher may hold it now
                    log.warning("stream %s: lost its dispatcher lock; letting go", destination_id)
                    self._let_go(destination_id)
            for destination_id in sorted(wanted - set(self.held)):
                lock = DestinationLock(destination_id, self._locks_engine())
                if lock.acquire():
                    self.held[destination_id] = (lock, Delivery(destination_id, self.settings))
            if not self.held:
                return 0  # the destinations are someone else's: no sealing either (their dispatcher seals)
            if time.monotonic() - self._last_seal >= self._seal_every:
                self._last_seal = time.monotonic()
                seal_in_background()  # delivery follows the chain: seal first, so the delay stays a few seconds
            for destination_id, (_, delivery) in list(self.held.items()):
                try:
                    delivered += delivery.run(max_batches=BATCHES_PER_ROUND)
                except Exception:  # noqa: BLE001 - one broken destination must not stop the others
                    log.exception("stream %s: dispatcher error", destination_id)
                    db.session.rollback()
                    db.session.remove()
        return delivered

    def _locks_engine(self):
        """PostgreSQL: an engine without pooling for the locks' connections (None elsewhere)."""
        if self._lock_engine is None:
            self._lock_engine = unpooled_engine(self.app)
        return self._lock_engine

    def _let_go(self, destination_id: int) -> None:
        lock, delivery = self.held.pop(destination_id)
        delivery.close()
        lock.release()

    def close(self) -> None:
        """Let go of every destination (another dispatcher may take them at once)."""
        with self.app.app_context():
            for destination_id in list(self.held):
                self._let_go(destination_id)
        if self._lock_engine is not None:
            self._lock_engine.dispose()
            self._lock_engine = None

    def run(self, stop: threading.Event, poll_s: float) -> None:
        """Rounds until ``stop`` is set; a round that delivered something is followed at once by another."""
        try:
            while not stop.is_set():
                try:
                    busy = self.round()
                except Exception:  # noqa: BLE001 - the database may be down: try again after the pause
                    log.warning("streams: a dispatcher round failed; retrying", exc_info=True)
                    busy = 0
                if not busy:
                    stop.wait(poll_s)
        finally:
            self.close()


class BackgroundDispatcher(BackgroundThread):
    """The dispatcher thread of one app in one process (it lets go of its destinations when stopped)."""

    def __init__(self, app):
        super().__init__("audit-streams", lambda stop: Dispatcher(app).run(stop, app.config["STREAM_POLL_SECONDS"]))
