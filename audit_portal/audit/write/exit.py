"""Process exit: every audit writer of the process writes what it holds (at exit, on SIGTERM, from gunicorn's hook)."""

from __future__ import annotations

import atexit
import signal
import threading
import weakref

#: Every live writer of this process (``writer.AuditWriter`` adds itself), closed (flushed) at exit.
WRITERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def close_all_writers() -> None:
    """Flush and stop every writer of this process (at exit, and from gunicorn's worker_exit hook)."""
    for writer in list(WRITERS):
        writer.close()


def install_sigterm_flush() -> None:
    """Turn SIGTERM into a normal exit (so atexit flushes the queue) where nobody else handles it.

    Gunicorn installs its own handler and exits its workers normally, which runs atexit too.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)
