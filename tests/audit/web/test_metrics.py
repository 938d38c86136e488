"""``audit_portal/audit/web/metrics.py`` and the audit families at ``/metrics``: each family the issue names, with
the values a user can check against the trail (logins counted once each when they commit, the writer's batches,
the spool and its replay, the seal lag, the last verification, a stream's lag, the open alerts)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from audit_portal.audit.alerts import service as alert_service
from audit_portal.audit.alerts.runner import AlertRunner
from audit_portal.audit.integrity.seal import seal
from audit_portal.audit.integrity.verify import VerifyResult, record_verification
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.streams.runner import Dispatcher
from audit_portal.audit.web import metrics as audit_metrics
from audit_portal.audit.write.service import log_audit, log_login_failed
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from tests.conftest import AuthActions
from tests.metrics.scrape import families, scrape, value

pytestmark = pytest.mark.settings(METRICS_ENABLED=True)

#: The families issue 20 names, as the exposition declares them.
REQUIRED = {"audit_events_written_total", "audit_writer_queue_depth", "audit_writer_batch_size", "audit_spool_bytes",
            "audit_spool_events", "audit_events_replayed_total", "audit_seal_lag_events", "audit_seal_lag_seconds",
            "audit_last_verification_ok", "audit_last_verification_timestamp_seconds", "audit_stream_lag_events",
            "audit_alerts_open", "http_request_duration_seconds"}


def _requests(app, count: int) -> None:
    with app.app_context():
        for i in range(count):
            log_audit(None, ActionType.REQUEST, ResourceType.REQUEST, None, f"request {i}")


def _deliver(app) -> None:
    dispatcher = Dispatcher(app)
    try:
        while dispatcher.round():
            pass
    finally:
        dispatcher.close()


def test_every_family_the_issue_names_is_exposed(app, client, runner):
    assert runner.invoke(args=["streams", "add", "--name", "siem", "--kind", "file", "--path", "siem.ndjson"]).exit_code == 0
    _requests(app, 2)
    assert app.extensions["audit_writer"].flush()
    text = client.get("/metrics").get_data(as_text=True)
    assert REQUIRED <= families(text), REQUIRED - families(text)
    assert 'audit_stream_lag_events{stream="siem"}' in text


def test_logins_count_once_each_when_they_commit_and_failed_ones_when_the_writer_writes_them(app, admin_id, client):
    before = scrape(client)
    for _ in range(3):
        assert AuthActions(app.test_client()).login("admin").status_code == 302
    for _ in range(2):
        assert AuthActions(app.test_client()).login("admin", password="wrong-password-1").status_code == 401
    assert app.extensions["audit_writer"].flush()
    after = scrape(client)
    for action, status, count in (("LOGIN", "SUCCESS", 3), ("LOGIN_FAILED", "FAILURE", 2)):
        labels = {"action_type": action, "status": status}
        assert value(after, "audit_events_written_total", **labels) - value(before, "audit_events_written_total",
                                                                            **labels) == count


@pytest.mark.settings(AUDIT_WRITE_DELAY_MS=5000)
def test_the_queue_depth_shows_waiting_events_and_a_batch_is_counted_with_its_size(app, client):
    before = scrape(client)
    _requests(app, 5)
    waiting = scrape(client)
    # The writer has taken the first event (or not yet) and gathers the rest for five seconds.
    assert value(waiting, "audit_writer_queue_depth") in (4, 5)
    assert app.extensions["audit_writer"].flush()
    deadline = time.monotonic() + 5
    while (after := scrape(client)) and value(after, "audit_writer_queue_depth") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert value(after, "audit_writer_queue_depth") == 0
    assert value(after, "audit_writer_batch_size_count") - value(before, "audit_writer_batch_size_count") == 1
    assert value(after, "audit_writer_batch_size_sum") - value(before, "audit_writer_batch_size_sum") == 5
    assert value(after, "audit_writer_batch_size_bucket", le="5.0") - value(before, "audit_writer_batch_size_bucket",
                                                                         le="5.0") == 1
    labels = {"action_type": "REQUEST", "status": "SUCCESS"}
    assert value(after, "audit_events_written_total", **labels) - value(before, "audit_events_written_total",
                                                                        **labels) == 5


def test_spooled_events_are_counted_in_the_spool_then_as_replayed(app, client, writer, database_outage, spooled):
    before = scrape(client)
    with app.app_context():
        for i in range(3):
            log_login_failed(f"nobody{i}", "unknown user")
    assert writer.flush()
    assert len(spooled()) == 3
    during = scrape(client)
    assert value(during, "audit_spool_events") == 3
    assert value(during, "audit_spool_bytes") == writer.spool.path.stat().st_size > 0
    failed = {"action_type": "LOGIN_FAILED", "status": "FAILURE"}
    assert value(during, "audit_events_written_total", **failed) == value(before, "audit_events_written_total", **failed)
    database_outage()  # the database is back
    assert writer.replay_spool() == 3
    after = scrape(client)
    assert value(after, "audit_spool_events") == value(after, "audit_spool_bytes") == 0
    assert value(after, "audit_events_replayed_total") - value(before, "audit_events_replayed_total") == 3
    assert value(after, "audit_events_written_total", **failed) - value(before, "audit_events_written_total", **failed) == 3


def test_the_seal_lag_counts_the_events_not_chained_yet_and_the_age_of_the_oldest(app, client):
    with app.app_context():
        log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "theme", "an old change", transactional=True,
                  timestamp=utcnow() - timedelta(seconds=90))
        db.session.commit()
    _requests(app, 4)
    assert app.extensions["audit_writer"].flush()
    with app.app_context():
        stored = db.session.scalar(select(func.count()).select_from(AuditLog))
    lagging = scrape(client)
    assert value(lagging, "audit_seal_lag_events") == stored >= 5
    assert 90 <= value(lagging, "audit_seal_lag_seconds") < 600
    with app.app_context():
        seal()
    sealed = scrape(client)
    assert value(sealed, "audit_seal_lag_events") == value(sealed, "audit_seal_lag_seconds") == 0


def test_the_last_verification_says_whether_the_chain_was_intact_and_when(app, client, runner):
    never = scrape(client)
    assert value(never, "audit_last_verification_ok") == value(never, "audit_last_verification_timestamp_seconds") == 0
    started = time.time()
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    intact = scrape(client)
    assert value(intact, "audit_last_verification_ok") == 1
    assert started - 1 <= value(intact, "audit_last_verification_timestamp_seconds") <= time.time()
    broken = VerifyResult()
    broken.problem("Link 3 was changed.")
    with app.app_context():
        record_verification(broken)
    failed = scrape(client)
    assert value(failed, "audit_last_verification_ok") == 0
    assert value(failed, "audit_last_verification_timestamp_seconds") >= value(
        intact, "audit_last_verification_timestamp_seconds")


def test_a_stream_behind_by_n_sealed_events_has_a_lag_of_n(app, client, runner):
    assert runner.invoke(args=["streams", "add", "--name", "siem", "--kind", "file", "--path", "siem.ndjson"]).exit_code == 0
    _deliver(app)
    assert value(scrape(client), "audit_stream_lag_events", stream="siem") == 0
    _requests(app, 7)
    assert app.extensions["audit_writer"].flush()
    with app.app_context():
        seal()
    behind = scrape(client)
    assert value(behind, "audit_stream_lag_events", stream="siem") == 7
    assert value(behind, "audit_stream_lag_seconds", stream="siem") >= 0
    _deliver(app)
    assert value(scrape(client), "audit_stream_lag_events", stream="siem") == 0


def test_open_alerts_are_counted_until_acknowledged(app, client):
    assert value(scrape(client), "audit_alerts_open") == 0
    with app.app_context():
        for i in range(20):
            log_login_failed(f"victim{i}", "wrong password", ip_address="203.0.113.5")
    assert app.extensions["audit_writer"].flush()
    alert_runner = AlertRunner(app)
    try:
        assert alert_runner.round() is not None
    finally:
        alert_runner.close()
    with app.app_context():
        open_alerts = alert_service.list_alerts(state="open")
        first_id = open_alerts[0].id
    assert open_alerts
    assert value(scrape(client), "audit_alerts_open") == len(open_alerts)
    with app.app_context():
        alert_service.acknowledge(None, alert_service.get_alert(first_id))
        db.session.commit()
    assert value(scrape(client), "audit_alerts_open") == len(open_alerts) - 1


def test_without_the_database_a_scrape_still_answers_and_says_so(app, client, monkeypatch):
    def unreachable():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("the database is down"))

    monkeypatch.setattr(audit_metrics, "seal_lag", unreachable)
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = scrape(client)
    assert value(samples, "audit_metrics_database_ok") == 0
    assert ("audit_spool_bytes", frozenset()) in samples
    assert ("audit_seal_lag_events", frozenset()) not in samples
    monkeypatch.undo()
    assert value(scrape(client), "audit_metrics_database_ok") == 1


@pytest.mark.postgres_only
@pytest.mark.settings(AUDIT_WRITE_DELAY_MS=60_000)  # the writer moves the outbox only when the test flushes it
def test_the_outbox_backlog_is_counted_until_the_writer_moves_it(app, client, writer):
    """Domain events committed into the outbox (PostgreSQL) show as its backlog, with the age of the oldest; once the
    writer moves them the backlog is 0."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgres"):
        pytest.skip("the outbox is PostgreSQL's")
    assert writer.flush()
    with app.app_context():
        for i in range(2):
            log_audit(None, ActionType.UPDATE, ResourceType.SETTING, i, f"change {i}",
                      timestamp=utcnow() - timedelta(seconds=30), transactional=True)
        db.session.commit()
    waiting = scrape(client)
    assert value(waiting, "audit_outbox_events") == 2
    assert 29 <= value(waiting, "audit_outbox_age_seconds") < 300
    assert writer.flush()
    moved = scrape(client)
    assert value(moved, "audit_outbox_events") == 0 and value(moved, "audit_outbox_age_seconds") == 0
