"""One worker at a time (a stream destination's dispatcher, the alert evaluator), across processes and servers:
a PostgreSQL advisory lock held on a connection of its own, or on SQLite (where gunicorn's workers share one
database file) a lock file in AUDIT_DATA_DIR."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from flask import current_app

from ...extensions import db

#: Advisory-lock namespaces (the first key of ``pg_try_advisory_lock``); the sealer's is 7317001.
STREAM_DESTINATION = 7_317_002
ALERT_EVALUATOR = 7_317_003


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
