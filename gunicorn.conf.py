"""gunicorn settings for production: ``gunicorn --config gunicorn.conf.py wsgi:app``."""

import os
import shutil
import tempfile
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
graceful_timeout = 30
accesslog = "-"

#: With METRICS_ENABLED, /metrics adds up the figures of every worker from files in PROMETHEUS_MULTIPROC_DIR
#: (prometheus_client's multiprocess mode, docs/metrics.md). Without a directory given, the server makes its own
#: here, before any worker imports prometheus_client, and removes it when it stops.
_OWN_METRICS_DIR = None
if (os.environ.get("METRICS_ENABLED", "").strip().lower() in {"1", "true", "yes", "on"}
        and not os.environ.get("PROMETHEUS_MULTIPROC_DIR")):
    _OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="audit-portal-metrics-")


def on_starting(server):
    """Start the metrics from zero: files an earlier server left in PROMETHEUS_MULTIPROC_DIR would be added in."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()


def child_exit(server, worker):
    """Drop a gone worker's live gauges (its writer's queue depth); its counters and histograms stay counted."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


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
