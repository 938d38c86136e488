"""The metric families that processes update as things happen (docs/metrics.md lists every family).

They are defined once, at import, whatever the settings: callers update them only when METRICS_ENABLED is true
(the writer, the request hooks and ``log_audit`` check it), so with metrics off they cost nothing. Under gunicorn,
``PROMETHEUS_MULTIPROC_DIR`` (set before ``prometheus_client`` is first imported: gunicorn.conf.py does it) makes
every update go to a per-process file that the scrape adds up. The gauges read at scrape time (seal lag, spool,
streams, alerts, last verification) are not here: the audit package's collector computes them
(``audit/web/metrics.py``).
"""

from __future__ import annotations

from collections import Counter as _Tally

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, values
from sqlalchemy import event
from sqlalchemy.orm import Session

#: Whether this process's figures go to files in PROMETHEUS_MULTIPROC_DIR: decided by prometheus_client when it
#: was first imported, so asked of it rather than of the environment (which may have changed since).
MULTIPROCESS: bool = values.ValueClass._multiprocess

#: No ``*_created`` series: they would double the series a scrape returns, and no alert or dashboard here uses them.
disable_created_metrics()

EVENTS_WRITTEN = Counter(
    "audit_events_written", "Audit events this process stored in the database, by action type and status.",
    ["action_type", "status"])
EVENTS_REPLAYED = Counter(
    "audit_events_replayed", "Audit events replayed from the local spool into the database.")
WRITER_QUEUE_DEPTH = Gauge(
    "audit_writer_queue_depth", "Request and error events queued for the background writer (all workers).",
    multiprocess_mode="livesum")
WRITER_BATCH_SIZE = Histogram(
    "audit_writer_batch_size", "Events per batch the background writer wrote in one transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500))
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request (until the response is returned to the "
    "server: a streamed body's transfer is not included), by route and method.", ["endpoint", "method"])
REPLICA_SKIPS = Counter(
    "database_replica_skips", "Requests whose replica reads the primary served instead, by reason: the replica "
    "lagged more than REPLICA_MAX_LAG_SECONDS, could not be reached, or failed a read.", ["reason"])
REPLICA_LAG = Gauge(
    "database_replica_lag_seconds", "The read replica's lag at its last check (the highest of the workers').",
    multiprocess_mode="max")

#: ``Session.info`` key: (the innermost transaction when it was inserted, event) of each domain event inserted in
#: the session's transaction.
_PENDING = "metrics_pending_events"


def count_written(events) -> None:
    """Count ``events`` (event dicts) as stored; call it once their transaction has committed."""
    for (action_type, status), count in _Tally((e.get("action_type"), e.get("status")) for e in events).items():
        EVENTS_WRITTEN.labels(action_type, status).inc(count)


def count_on_commit(session: Session, event: dict) -> None:
    """Count ``event`` (inserted in ``session``'s transaction) when that transaction commits, not if it (or the
    savepoint it was inserted in) rolls back."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING, []).append((transaction, event))


def _within(transaction, ancestor) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        count_written([event for _, event in pending])


def _rollback(session: Session, previous_transaction) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        pending[:] = [(t, event) for t, event in pending if not _within(t, previous_transaction)]


def _transaction_end(session: Session, transaction) -> None:
    # The outermost transaction ended without a commit (the session closed): nothing to count.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def count_domain_events() -> None:
    """Listen to every session's commits (once per process): domain events count when their change commits."""
    if not event.contains(Session, "after_commit", _commit):
        event.listen(Session, "after_commit", _commit)
        event.listen(Session, "after_soft_rollback", _rollback)
        event.listen(Session, "after_transaction_end", _transaction_end)
