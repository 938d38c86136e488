"""A worker's thread in each app process (the stream dispatcher, the alert evaluator): started by the first
request of the process, again after a fork (gunicorn's workers are forks of one master), stopped on demand."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class BackgroundThread:
    """Runs ``run(stop)`` in a daemon thread named ``name``, once per process."""

    def __init__(self, name: str, run: Callable[[threading.Event], None]):
        self.name, self._run = name, run
        self._pid: int | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._guard:
            if self._pid == os.getpid():
                return
            self._pid, self._stop = os.getpid(), threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop this process's thread after its current round."""
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)
