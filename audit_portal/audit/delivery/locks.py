"""One worker at a time (the background sealer, the partition maintenance, a stream destination's dispatcher, the
alert evaluator), across processes and servers: a PostgreSQL advisory lock held on a connection of its own, or on
SQLite (where gunicorn's workers share one database file) a lock file in AUDIT_DATA_DIR.

Every advisory-lock namespace of the app is listed here. The singletons' locks are session locks on two keys
``(namespace, key)``; the sealer's and the partitions' transaction locks take one key (a bigint), a space of
their own in PostgreSQL, so ``pg_advisory_xact_lock(7317001)`` never meets ``pg_try_advisory_lock(7317001, 0)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from flask import current_app

from ...database import unpooled_engine
from ...extensions import db

log = logging.getLogger(__name__)

#: Advisory-lock namespaces (the first key of ``pg_try_advisory_lock``). SEALER also serialises every seal pass,
#: whoever runs it (``integrity/seal.py``: ``pg_advisory_xact_lock(SEALER)``, one key); ``(SEALER, 0)`` is held by
#: the one process whose writer seals in the background (``integrity/housekeeping.py``).
SEALER = 7_317_001
STREAM_DESTINATION = 7_317_002  #: key: the destination's id
ALERT_EVALUATOR = 7_317_003  #: key: 0
PARTITION_MAINTENANCE = 7_317_004  #: key: 0; the process that creates the months ahead (``housekeeping.py``)
#: One key: ``pg_advisory_xact_lock(DIGESTS)`` serialises the signing of digests (``integrity/digests.py``), so two
#: sealer processes never sign the same range.
DIGESTS = 7_317_005
#: Not a namespace but one key: ``record/partitions.py`` (which this layer cannot import) takes
#: ``pg_advisory_xact_lock(7317020)`` while it creates months, so an insert and the maintenance never race for one.
PARTITION_CREATION = 7_317_020


class WorkerLock:
    """Holds "I am the one doing this" until released (or the process dies): ``namespace`` and ``key`` name the
    job on PostgreSQL, ``file_name`` on SQLite. On PostgreSQL the lock lives on a connection of its own, outside
    the app's pool (``engine``: one without pooling), so held locks never starve requests of connections, and a
    lost connection (a restart, a timeout) is noticed by ``alive``."""

    def __init__(self, namespace: int, key: int, file_name: str, engine=None):
        self.namespace, self.key, self.file_name, self.engine = namespace, key, file_name, engine
        self._connection = None
        self._file = None

    def alive(self) -> bool:
        """Whether the lock is still held (on PostgreSQL: its connection still answers)."""
        if self._connection is None:
            return self._file is not None
        try:
            self._connection.exec_driver_sql("SELECT 1")
            self._connection.commit()
        except Exception:  # noqa: BLE001 - the connection is gone, and the lock with it
            return False
        return True

    def acquire(self) -> bool:
        if db.engine.dialect.name == "postgresql":
            connection = (self.engine or db.engine).connect()
            if connection.exec_driver_sql("SELECT pg_try_advisory_lock(%s, %s)",
                                          (self.namespace, self.key)).scalar():
                connection.commit()  # the lock is the session's; no transaction stays open holding a snapshot
                self._connection = connection
                return True
            connection.close()
            return False
        path = Path(current_app.config["AUDIT_DATA_DIR"]) / self.file_name
        handle = open(path, "a")  # noqa: SIM115 - held open for as long as the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.exec_driver_sql("SELECT pg_advisory_unlock(%s, %s)", (self.namespace, self.key))
                self._connection.commit()
            except Exception:  # noqa: BLE001 - never hand a connection that may still hold the lock back to a pool
                with contextlib.suppress(Exception):
                    self._connection.invalidate()
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._file is not None:
            with contextlib.suppress(Exception):
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._file.close()
            self._file = None


class SingletonJob:
    """Whether this process is the one doing a job: ``mine()`` takes the job's lock when it is free and keeps it
    while its connection lives (checked at each call), so exactly one process, on one server, does the job, and
    another takes over when that process dies or lets go. Call it in an app context."""

    def __init__(self, app, namespace: int, key: int, file_name: str):
        self.app, self.namespace, self.key, self.file_name = app, namespace, key, file_name
        self.lock: WorkerLock | None = None
        self._engine = None
        self._engine_made = False

    def mine(self) -> bool:
        if self.lock is not None and not self.lock.alive():
            log.warning("%s: lost its lock (%s, %s); letting go", self.file_name, self.namespace, self.key)
            self.lock.release()
            self.lock = None
        if self.lock is None:
            if not self._engine_made:
                self._engine, self._engine_made = unpooled_engine(self.app), True
            lock = WorkerLock(self.namespace, self.key, self.file_name, self._engine)
            if not lock.acquire():
                return False
            log.info("%s: this process (%s) holds the lock now", self.file_name, os.getpid())
            self.lock = lock
        return True

    def release(self) -> None:
        """Let go (another process may take the job at once)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self._engine is not None:
            self._engine.dispose()
        self._engine, self._engine_made = None, False
