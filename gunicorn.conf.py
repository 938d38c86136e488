"""gunicorn settings for production: ``gunicorn --config gunicorn.conf.py wsgi:app``."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
graceful_timeout = 30
accesslog = "-"


def post_worker_init(worker):
    """Let long streamed responses (exports) tell the arbiter this worker is alive (audit_portal/serving.py),
    and move everything the app allocated at start-up (about 120,000 objects: models, templates, routes)
    out of the garbage collector's reach: they live as long as the worker, and every full collection
    would otherwise walk them again."""
    import gc

    from audit_portal.serving import set_heartbeat

    set_heartbeat(worker.notify)
    gc.freeze()


def worker_exit(server, worker):
    """Write the audit events still queued in this worker before it goes (SIGTERM, reload, max-requests)."""
    from audit_portal.audit import close_all_writers

    close_all_writers()
