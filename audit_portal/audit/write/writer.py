"""The background writer: request and error events leave the request path here.

Events are queued in memory and inserted in batches by a daemon thread (one per process, started
after a fork). When the database cannot take them they go to the local spool and are replayed once
it answers again; inserts skip event ids already stored, so replays are idempotent. Queued events
are written when the process exits normally or on SIGTERM (``exit.py``). Between batches the thread also runs the
housekeeping it was given, every ``housekeeping_every`` seconds (``audit.init_app`` gives it the background
sealer, every AUDIT_SEAL_INTERVAL seconds).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

from ...extensions import db
from ...metrics import families
from . import outbox
from .exit import WRITERS
from .spool import Spool
from .store import database_unavailable

log = logging.getLogger(__name__)

BATCH_SIZE = 500
#: Queued (once at a time) to have the writer move the outbox's rows soon (``outbox.py``).
_MOVE = object()

REPLAY_INTERVAL_S = 2.0


class AuditWriter:
    """Queue + thread + spool for one app in one process."""

    def __init__(self, app, housekeeping=None, housekeeping_every: float = 0):
        self.app = app
        #: Called (in an app context) from the writer thread every ``housekeeping_every`` seconds (0: never);
        #: it may raise (it is tried again at the next interval).
        self._housekeeping = housekeeping
        self._housekeeping_every = housekeeping_every
        self.spool = Spool(app.config["AUDIT_DATA_DIR"], app.config["AUDIT_SPOOL_MAX_BYTES"])
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # set: write what is queued now, without waiting for more
        self._wakeup = threading.Event()  # set: stop gathering (a flush, close, or a full batch queued)
        self._closed = False
        self._last_replay = 0.0
        self._last_housekeeping = time.monotonic()
        #: After the first event of a batch the writer waits this long for more before it writes
        #: (AUDIT_WRITE_DELAY_MS): one transaction, one connection checkout and one commit for all the events
        #: that arrive meanwhile, and no thread switch per event (a request that queues an event while the
        #: writer waits does not wake it). A batch has a fixed cost on top of its rows (docs/performance.md),
        #: so gathering more events per batch makes each cheaper. ``flush()`` and ``close()`` cut the wait short.
        self._linger = max(0, app.config.get("AUDIT_WRITE_DELAY_MS", 250)) / 1000
        #: The metric families (docs/metrics.md), or None when METRICS_ENABLED is false: then nothing is counted.
        self._metrics = families if app.config.get("METRICS_ENABLED") else None
        #: The outbox's moves (``outbox.py``); the engine is looked up each time (tests swap ``_engine``).
        self._outbox = outbox.Mover(lambda: self._engine())
        self._move_queued = False
        WRITERS.add(self)

    # -- producer side (request threads) -------------------------------------------------------

    def submit(self, event: dict) -> None:
        """Queue ``event`` for writing. Never blocks on the database, never raises."""
        if self._closed:
            self._write([event])
            return
        self._ensure_thread()
        self._queue.put(event)
        depth = self._queue.qsize()
        if self._metrics is not None:
            self._metrics.WRITER_QUEUE_DEPTH.set(depth)
        if depth >= BATCH_SIZE:
            self._wakeup.set()  # a full batch is waiting: write it now, not after the delay

    def outbox_committed(self) -> None:
        """A transaction added to the outbox and committed: move it with the next batch (after the usual delay, so
        that one move carries many). Never raises."""
        try:
            if self._closed:
                self._outbox.move_all_quietly()
                return
            # Only a running thread is woken: a process that has none (a command) moves the rows at exit, or another
            # process's writer does; the thread is not started for this.
            if not self._move_queued and self._running():
                self._move_queued = True
                self._queue.put(_MOVE)
        except Exception:  # noqa: BLE001 - the rows are safe in the outbox: the next move takes them
            log.warning("audit writer: could not schedule the outbox's move", exc_info=True)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written (or spooled) and a move of the outbox was tried (rows it
        could not move, the database being away, wait there for the next). True if it finished in time."""
        deadline = time.monotonic() + timeout
        if self._outbox.in_use() and not self._closed:
            self._ensure_thread()
            self._move_queued = True  # one more move: one already queued may have taken its rows before they came
            self._queue.put(_MOVE)
        self._hurry.set()
        self._wakeup.set()
        try:
            while self._queue.unfinished_tasks:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
            return True
        finally:
            if not self._closed:
                self._hurry.clear()

    def close(self) -> None:
        """Write what is queued, stop the thread, and let the housekeeping release what it holds. Safe to call
        twice."""
        if self._closed:
            return
        self._closed = True
        self._hurry.set()
        self._wakeup.set()
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            self._queue.put(None)
            self._thread.join(timeout=30)
        self._drain_inline()
        self._outbox.move_all_quietly()
        release = getattr(self._housekeeping, "close", None)
        if release is not None:
            try:
                release()
            except Exception:  # noqa: BLE001 - its locks go with the process's connections anyway
                log.warning("audit writer: the housekeeping did not let go of its locks", exc_info=True)

    def start(self) -> None:
        """Start this process's writer thread now, not at its first event: its housekeeping (the singletons it
        may take over) then runs in every process that served a request."""
        if not self._closed:
            self._ensure_thread()

    # -- consumer side (the thread) -------------------------------------------------------------

    def _running(self) -> bool:
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def _ensure_thread(self) -> None:
        if self._running():
            return
        with self._lock:
            if self._pid != os.getpid():
                # A forked child inherits the parent's queue object but not its thread.
                self._queue = queue.Queue()
                self._move_queued = False
                self._hurry = threading.Event()
                self._wakeup = threading.Event()
                self._thread = None
            if self._thread is None or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=REPLAY_INTERVAL_S)
            except queue.Empty:
                self._outbox.move_all_quietly()  # rows a process that died left behind, or another writer's
                self._maybe_replay()
                self._maybe_housekeep()
                self._report_depth()
                continue
            if first is None:
                self._queue.task_done()
                return
            batch = [first]
            self._gather(time.monotonic() + self._linger)
            stop = False
            while len(batch) < BATCH_SIZE:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    self._queue.task_done()
                    break
                batch.append(item)
            try:
                self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self._report_depth()
            if stop:
                return
            self._maybe_housekeep()

    def _gather(self, deadline: float) -> None:
        """Wait until ``deadline`` for more events, unless a flush or close hurries, or a full batch is queued:
        the delay is for gathering events, never for holding back a backlog."""
        while not self._hurry.is_set() and self._queue.qsize() < BATCH_SIZE - 1:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.wait(remaining)
            self._wakeup.clear()

    def _report_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.WRITER_QUEUE_DEPTH.set(self._queue.qsize())

    def _maybe_housekeep(self) -> None:
        """Run the housekeeping when its interval has passed."""
        if (self._housekeeping is None or not self._housekeeping_every
                or time.monotonic() - self._last_housekeeping < self._housekeeping_every):
            return
        self._last_housekeeping = time.monotonic()
        try:
            with self.app.app_context():
                self._housekeeping()
        except Exception:  # noqa: BLE001 - tried again at the next interval
            log.warning("audit writer: housekeeping (%s) failed; will retry",
                        getattr(self._housekeeping, "__name__", type(self._housekeeping).__name__), exc_info=True)

    def _drain_inline(self) -> None:
        batch = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            if item is not None:
                batch.append(item)
        if batch:
            self._write(batch)

    def _engine(self):
        """The app's database engine (tests point this at an unreachable one to simulate an outage)."""
        with self.app.app_context():
            return db.engine

    def _store(self, batch: list[dict]) -> None:
        """Write ``batch``; on PostgreSQL with the outbox, move (some of) its rows in the same transaction."""
        if self._outbox.store(batch) and not self._closed:
            self._move_queued = False
            self.outbox_committed()  # more are waiting
        if self._metrics is not None:
            # Committed; replayed events too (a spooled event was not counted). Moved domain events were counted
            # when their change committed.
            self._metrics.count_written(batch)

    def _write(self, batch: list) -> None:
        if _MOVE in batch:
            self._move_queued = False  # a commit from now on queues another move
            batch = [item for item in batch if item is not _MOVE]
            if not batch and not self._outbox.in_use():
                return
        if self._metrics is not None and batch:
            self._metrics.WRITER_BATCH_SIZE.observe(len(batch))
        try:
            self._store(batch)
        except Exception as exc:  # noqa: BLE001 - the database is down or refused: keep the events locally
            if not batch:  # only the outbox's move: its rows wait in the database for the next one
                log.warning("audit writer: could not move the outbox (%s); will retry", type(exc).__name__)
                return
            if database_unavailable(exc):
                # Expected during an outage: one line per batch, not a traceback each.
                log.warning("audit writer: database unavailable (%s: %s); spooling %d events",
                            type(exc).__name__, str(exc).split("\n", 1)[0][:300], len(batch))
            else:
                log.exception("audit writer: database write failed; spooling %d events", len(batch))
            try:
                self.spool.append(batch)
            except Exception:  # noqa: BLE001
                log.critical("audit writer: could not spool %d events: %r", len(batch), batch, exc_info=True)
            return
        self._maybe_replay()

    def _maybe_replay(self) -> None:
        now = time.monotonic()
        if now - self._last_replay < REPLAY_INTERVAL_S or self.spool.pending_bytes() == 0:
            return
        self._last_replay = now
        self.replay_spool()

    def replay_spool(self) -> int:
        """Write the spooled events to the database; returns how many (0 if it is still unavailable)."""

        try:
            replayed = self.spool.replay(self._store)
        except Exception:  # noqa: BLE001
            log.warning("audit spool: database still unavailable; will retry", exc_info=True)
            return 0
        if replayed and self._metrics is not None:
            self._metrics.EVENTS_REPLAYED.inc(replayed)
        return replayed
