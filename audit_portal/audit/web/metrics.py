"""The audit trail's state for ``/metrics``, read at scrape time (docs/metrics.md): the spool, the outbox, the seal lag, the
last verification, each stream's lag and the open alerts.

It is registered on the scrape's registry only (``audit.init_app`` lends it to ``audit_portal.metrics``), so
under gunicorn the worker that answers a scrape reads these once, not every worker. If the database does not
answer, its families are left out and ``audit_metrics_database_ok`` is 0 (the spool's are still there).
"""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from ...extensions import db
from ..alerts import service as alerts
from ..integrity.seal import seal_lag
from ..read.query import AuditFilters, AuditLogRepository
from ..record.enums import ActionType, Status
from ..streams import service as streams
from ..write import outbox

log = logging.getLogger(__name__)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class AuditCollector:
    """A prometheus_client collector for one app (the scrape runs inside that app's request)."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        spool = self.app.extensions["audit_writer"].spool
        yield _gauge("audit_spool_bytes", "Size of the local spool of events waiting for the database.",
                     spool.pending_bytes())
        yield _gauge("audit_spool_events", "Events waiting in the local spool for the database.",
                     spool.pending_events())
        try:
            families = list(self._from_database())
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("metrics: the database did not answer (%s); its metrics are left out of this scrape",
                        type(exc).__name__)
            families = []
        yield from families
        yield _gauge("audit_metrics_database_ok", "1 if this scrape could read the database-backed metrics, else 0.",
                     1 if families else 0)

    def _from_database(self):
        waiting, waited = outbox.backlog()
        yield _gauge("audit_outbox_events", "Domain events committed into the outbox, not moved into the log yet.",
                     waiting)
        yield _gauge("audit_outbox_age_seconds", "Age of the oldest event in the outbox (0 when empty).", waited)
        behind, age = seal_lag()
        yield _gauge("audit_seal_lag_events", "Stored events not chained by the sealer yet.", behind)
        yield _gauge("audit_seal_lag_seconds", "Age of the oldest event not chained yet (0 when none).", age)
        last = AuditLogRepository().newest(AuditFilters(action_type=ActionType.AUDIT_VERIFY.value))
        yield _gauge("audit_last_verification_ok",
                     "1 if the last recorded verification of the chain found it intact, else 0 (0 also when none).",
                     1 if last is not None and last.status == Status.SUCCESS.value else 0)
        yield _gauge("audit_last_verification_timestamp_seconds",
                     "When the last verification of the chain was recorded (Unix time; 0 when none).",
                     last.timestamp.timestamp() if last is not None else 0)
        events = GaugeMetricFamily("audit_stream_lag_events", "Sealed events not delivered to the stream yet.",
                                   labels=["stream"])
        seconds = GaugeMetricFamily("audit_stream_lag_seconds",
                                    "Age of the oldest event not delivered to the stream yet (0 when caught up).",
                                    labels=["stream"])
        for destination in streams.list_destinations():
            events.add_metric([destination.name], destination.lag_events)
            seconds.add_metric([destination.name], destination.lag_seconds)
        yield events
        yield seconds
        yield _gauge("audit_alerts_open", "Alerts open (not acknowledged, not resolved).", alerts.open_count())
        db.session.rollback()  # end the read transaction: a scrape holds no snapshot or lock afterwards
