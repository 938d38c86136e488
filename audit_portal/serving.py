"""What the WSGI server lends the app: a heartbeat for long responses.

gunicorn's arbiter restarts a worker that has not reported for ``timeout`` seconds (30 by default), and a sync
worker reports only between requests, so a download that streams for longer than that would be cut off
halfway. ``gunicorn.conf.py`` registers the worker's ``notify`` here (``post_worker_init``); code that streams a
long response calls ``heartbeat()`` after each piece it produces. A download that stops making progress (a
client that stopped reading, a stuck query) no longer calls it, so the worker is still replaced after the
timeout. Without gunicorn (tests, ``flask run``, the CLI) it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

_notify: Callable[[], None] | None = None


def set_heartbeat(notify: Callable[[], None] | None) -> None:
    global _notify
    _notify = notify


def heartbeat() -> None:
    if _notify is not None:
        _notify()
