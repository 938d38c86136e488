"""The error dashboard's rollup (audit/write/rollup.py): every way an event reaches ``audit_logs`` keeps it equal
to a count of the events themselves, and the dashboard gives the same numbers from it as from the events."""

from __future__ import annotations

import html
import random
import re
import threading
import urllib.parse
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, timedelta

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from audit_portal.audit.integrity import purge, purge_plan
from audit_portal.audit.read import dashboard
from audit_portal.audit.read.query import AuditFilters
from audit_portal.audit.record.enums import ActionType, ErrorSeverity, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.write.inserts import insert_events
from audit_portal.audit.write.rollup import ErrorRollup, midnight, rebuild
from audit_portal.audit.write.service import log_audit, log_error
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ..chain_support import seal

FINGERPRINTS = ["f" * 15 + str(i) for i in range(4)]


def error_event(fingerprint: str | None = FINGERPRINTS[0], *, days_ago: float = 0, severity="ERROR",
                error_type="ValueError", status=Status.ERROR) -> dict:
    return build_event(ActionType.ERROR_OCCURRED, ResourceType.SYSTEM, None, f"{error_type}: boom",
                       timestamp=utcnow() - timedelta(days=days_ago), status=status, severity=severity,
                       error_type=error_type, fingerprint=fingerprint)


def write(app, events: list[dict], **options) -> None:
    with app.app_context(), db.engine.begin() as connection:
        insert_events(connection, events, **options)


def counted_from_events(app) -> dict:
    """What the rollup must hold: the ERROR events counted per UTC day, fingerprint, error type and severity."""
    with app.app_context():
        rows = db.session.execute(select(AuditLog.id, AuditLog.timestamp, AuditLog.fingerprint, AuditLog.error_type,
                                         AuditLog.severity).where(AuditLog.status == Status.ERROR.value)).all()
        db.session.remove()
    out: dict = defaultdict(lambda: [0, None, None, 0])
    for id_, timestamp, fingerprint, error_type, severity in rows:
        entry = out[(timestamp.astimezone(UTC).date(), fingerprint or "", error_type or "", severity or "")]
        entry[0] += 1
        entry[1] = timestamp if entry[1] is None else min(entry[1], timestamp)
        entry[2] = timestamp if entry[2] is None else max(entry[2], timestamp)
        entry[3] = max(entry[3], id_)
    return {key: tuple(value) for key, value in out.items()}


def rollup_rows(app) -> dict:
    with app.app_context():
        rows = db.session.scalars(select(ErrorRollup)).all()
        out = {(r.day, r.fingerprint, r.error_type, r.severity): (r.occurrences, r.first_seen, r.last_seen, r.latest_id)
               for r in rows}
        db.session.remove()
    return out


def assert_rollup_matches_events(app) -> dict:
    expected = counted_from_events(app)
    assert rollup_rows(app) == expected
    return expected


# -- every write path keeps it ------------------------------------------------------------------------------


def test_batches_single_rows_and_other_statuses_are_counted_exactly(app):
    write(app, [error_event(FINGERPRINTS[i % 3], days_ago=i % 2, severity=["ERROR", "CRITICAL"][i % 2])
                for i in range(12)])
    write(app, [error_event(FINGERPRINTS[3], severity="WARNING", error_type="ValidationError")])  # one row
    write(app, [error_event(None, severity=None, error_type=None)])  # a failed request's own ERROR row
    write(app, [error_event(FINGERPRINTS[0], status=Status.FAILURE), error_event(FINGERPRINTS[0])])

    expected = assert_rollup_matches_events(app)

    today = utcnow().date()
    assert expected[(today, FINGERPRINTS[0], "ValueError", "ERROR")][0] == 3  # 2 of the batch + 1; not the FAILURE
    assert expected[(today, "", "", "")][0] == 1
    assert sum(value[0] for value in expected.values()) == 15


def test_a_replayed_batch_is_counted_once(app):
    batch = [error_event(FINGERPRINTS[i % 2]) for i in range(6)]
    write(app, batch[:4], ignore_duplicates=True)
    write(app, batch, ignore_duplicates=True)  # a spool replay: 4 of these are stored already
    write(app, batch, ignore_duplicates=True)

    expected = assert_rollup_matches_events(app)
    assert sum(value[0] for value in expected.values()) == 6


def test_a_refused_insert_leaves_the_rollup_as_it_was(app):
    stored = error_event()
    write(app, [stored])
    before = rollup_rows(app)

    with pytest.raises(IntegrityError):
        # The same event again (its id and its time: the unique key, with the partition key on PostgreSQL).
        write(app, [error_event(FINGERPRINTS[1]),
                    {**error_event(), "event_id": stored["event_id"], "timestamp": stored["timestamp"]}])

    assert rollup_rows(app) == before
    assert_rollup_matches_events(app)


def test_events_written_by_the_app_itself_are_counted(app, client, audit_rows):
    """The exception handler's error (background writer) and its failed request's row, an in-transaction event
    with the ERROR status, and log_error: all reach the rollup."""
    assert client.post("/_test/boom/zero").status_code == 500  # a POST: its REQUEST row is recorded too
    assert client.post("/_test/boom/value").status_code == 500
    with app.app_context():
        log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "x", "Setting could not be applied",
                  status=Status.ERROR, transactional=True)
        db.session.commit()
        try:
            raise KeyError("missing")
        except KeyError as exc:
            log_error(exc)
    audit_rows()  # flushes the writer

    expected = assert_rollup_matches_events(app)
    by_type = defaultdict(int)
    for (_, fingerprint, error_type, _), (occurrences, *_) in expected.items():
        by_type[error_type if fingerprint else "(no fingerprint)"] += occurrences
    assert by_type == {"ZeroDivisionError": 1, "ValueError": 1, "KeyError": 1, "(no fingerprint)": 3}


def test_a_blank_fingerprint_or_error_type_is_stored_as_none():
    event = build_event(ActionType.ERROR_OCCURRED, ResourceType.SYSTEM, None, "x", timestamp=utcnow(),
                        status=Status.ERROR, fingerprint="", error_type="")
    assert event["fingerprint"] is None and event["error_type"] is None


def test_concurrent_batches_with_the_same_keys_lose_no_counts(app):
    """Writers in several processes add to the same rollup rows at once: every increment lands (an upsert
    that adds, not a read-modify-write), and none of the batches fails."""
    failures = []

    def writer(seed: int):
        rng = random.Random(seed)
        try:
            for _ in range(15):
                batch = [error_event(rng.choice(FINGERPRINTS), severity=rng.choice(["ERROR", "CRITICAL"]))
                         for _ in range(20)]
                rng.shuffle(batch)
                write(app, batch, ignore_duplicates=True)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    expected = assert_rollup_matches_events(app)
    assert sum(value[0] for value in expected.values()) == 4 * 15 * 20


def test_a_recount_beside_busy_writers_counts_every_event_once(app):
    """``flask audit rollup`` (or a seed's recount) while the app writes errors: an event committed between the
    recount's DELETE and its INSERT must be counted once, not by both the recount and its own upsert."""
    stop, failures = threading.Event(), []

    def writer(seed: int):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                write(app, [error_event(f"{rng.randrange(10**15):016d}") for _ in range(3)])  # new keys, mostly
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(15):
            with app.app_context(), db.engine.begin() as connection:
                rebuild(connection)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)

    assert failures == []
    assert_rollup_matches_events(app)


def test_the_demo_seed_leaves_an_exact_rollup(app, runner):
    result = runner.invoke(args=["demo", "seed", "--count", "1500", "--days", "10"])
    assert result.exit_code == 0, result.output

    expected = assert_rollup_matches_events(app)
    assert sum(value[0] for value in expected.values()) > 50  # the seed makes errors, with repeated fingerprints


class Interrupted(Exception):
    pass


def dashboard_groups(app) -> list[tuple[str, int]]:
    with app.app_context():
        groups, _ = dashboard.error_groups(AuditFilters(status=Status.ERROR.value))
        db.session.remove()
    return sorted((g.fingerprint, g.count) for g in groups)


def test_the_retention_purge_keeps_the_rollup_exact_after_every_batch(app, runner, monkeypatch):
    """Batches of two, a day cut in two by the cutoff, and a purge interrupted after its first batch: every
    commit leaves the rollup equal to the events, and the dashboard answers throughout."""
    cut_day = midnight((utcnow() - timedelta(days=365)).date())
    cutoff_hour = (utcnow() - timedelta(days=365)) - cut_day  # the cutoff's time of day on that day
    old = [error_event(FINGERPRINTS[i % 2], days_ago=400 + i) for i in range(5)]
    if cutoff_hour > timedelta(minutes=10):  # the cut day has errors before and after the cutoff
        old.append({**error_event(FINGERPRINTS[3]), "timestamp": cut_day + timedelta(minutes=1)})
    young = [error_event(FINGERPRINTS[2], days_ago=3),
             {**error_event(FINGERPRINTS[3]), "timestamp": cut_day + cutoff_hour + timedelta(minutes=5)}]
    for event in old + young:
        write(app, [event])
    seal(app)
    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    monkeypatch.setattr(purge_plan, "droppable", lambda *args: [])  # batches only (whole months: test_partitions.py)
    calls = {"n": 0}
    real_rebuild = purge.rollup.rebuild

    def interrupt_after_first_batch(connection, *days):
        real_rebuild(connection, *days)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupted  # the process dies inside the second batch: that batch rolls back

    monkeypatch.setattr(purge.rollup, "rebuild", interrupt_after_first_batch)
    with pytest.raises(Interrupted):
        runner.invoke(args=["audit", "purge", "--older-than-days", "365", "--yes"], catch_exceptions=False)
    assert_rollup_matches_events(app)  # the first batch's deletes are committed, and counted out
    assert sum(count for _, count in dashboard_groups(app)) == len(old) + len(young) - 2

    monkeypatch.setattr(purge.rollup, "rebuild", real_rebuild)
    result = runner.invoke(args=["audit", "purge", "--older-than-days", "365", "--yes"])

    assert result.exit_code == 0, result.output
    expected = assert_rollup_matches_events(app)
    assert sum(value[0] for value in expected.values()) == len(young)
    assert dashboard_groups(app) == sorted((e["fingerprint"], 1) for e in young)


def test_flask_audit_rollup_repairs_a_damaged_rollup(app, runner):
    write(app, [error_event(FINGERPRINTS[i % 3], days_ago=i % 4) for i in range(9)])
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(delete(ErrorRollup.__table__).where(ErrorRollup.fingerprint == FINGERPRINTS[0]))
        connection.execute(update(ErrorRollup.__table__).values(occurrences=99))

    result = runner.invoke(args=["audit", "rollup"])

    assert result.exit_code == 0, result.output
    expected = assert_rollup_matches_events(app)
    assert f"{len(expected):,} rows" in result.output


# -- the dashboard reads it, with the same numbers ----------------------------------------------------------


def dashboard_numbers(app, filters: AuditFilters, monkeypatch, *, use_rollup: bool):
    monkeypatch.setattr(dashboard, "from_rollup", lambda f: use_rollup)
    with app.app_context():
        groups, total = dashboard.error_groups(filters, 0, 50)
        day_counts = dashboard.errors_per_day(filters)
        without = dashboard.errors_without_fingerprint(filters)
        db.session.remove()
    groups = [(g.fingerprint, g.error_type, g.count, g.first_seen, g.last_seen, g.latest.id) for g in groups]
    return groups, total, day_counts.days, day_counts.series, without


def test_the_dashboard_gives_the_same_numbers_from_the_rollup_as_from_the_events(app, runner, monkeypatch):
    assert runner.invoke(args=["demo", "seed", "--count", "1500", "--days", "20"]).exit_code == 0
    write(app, [error_event(None, severity=None, error_type=None, days_ago=d) for d in (0, 1, 5)])
    today = midnight(utcnow().date())
    some_type = "ValueError"
    with app.app_context():
        some_fingerprint = db.session.scalar(select(AuditLog.fingerprint).where(AuditLog.fingerprint.is_not(None)))
        db.session.remove()
    error = AuditFilters(status=Status.ERROR.value)
    cases = [
        error,
        replace(error, severity=ErrorSeverity.CRITICAL.value),
        replace(error, error_type=some_type),
        replace(error, fingerprint=some_fingerprint),
        replace(error, date_from=today - timedelta(days=7)),
        replace(error, date_from=today - timedelta(days=12), date_to=today - timedelta(days=2),
                severity=ErrorSeverity.ERROR.value),
        replace(error, date_to=today - timedelta(days=4)),
        replace(error, date_from=today + timedelta(days=2)),  # in the future: nothing, and no error
    ]
    eligible = dashboard.from_rollup  # before dashboard_numbers replaces it
    for filters in cases:
        assert eligible(filters), filters
        from_rollup = dashboard_numbers(app, filters, monkeypatch, use_rollup=True)
        from_events = dashboard_numbers(app, filters, monkeypatch, use_rollup=False)
        assert from_rollup == from_events, filters
        groups, total, days, series, without = from_rollup
        if filters.date_from is None or filters.date_from <= today:  # every case but the future one finds errors
            assert total > 0 and sum(map(sum, series.values())) > 0, filters
    unfiltered = dashboard_numbers(app, error, monkeypatch, use_rollup=True)
    with app.app_context():
        without_fingerprint = db.session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.status == Status.ERROR.value, AuditLog.fingerprint.is_(None)))
        db.session.remove()
    assert unfiltered[4] == (without_fingerprint, True) and without_fingerprint >= 3  # exact, not bounded
    assert len(unfiltered[2]) == 31  # the last 30 whole days and today


def test_filters_that_need_the_events_are_answered_from_the_events():
    today = midnight(utcnow().date())
    error = AuditFilters(status=Status.ERROR.value)
    assert dashboard.from_rollup(error)
    assert dashboard.from_rollup(replace(error, date_from=today, date_to=today + timedelta(days=1)))
    for needs_events in (AuditFilters(), replace(error, user_id=3), replace(error, search="boom"),
                         replace(error, action_type="REQUEST"),
                         replace(error, category="errors"), replace(error, request_id="r" * 36),
                         replace(error, resource_type="SYSTEM"), replace(error, status=Status.FAILURE.value),
                         replace(error, date_from=today + timedelta(hours=6)),
                         replace(error, date_to=today + timedelta(minutes=1)),
                         replace(error, username="alice"), replace(error, ip_address="203.0.113.24")):
        assert not dashboard.from_rollup(needs_events), needs_events


def test_the_dashboard_page_shows_the_rollups_counts(app, admin_client):
    write(app, [error_event(FINGERPRINTS[1], error_type="TimeoutError") for _ in range(7)])
    write(app, [error_event(FINGERPRINTS[2], error_type="KeyError", days_ago=2) for _ in range(3)])

    page = admin_client.get("/admin/audit-logs/errors").get_data(as_text=True)

    table = page[page.index('data-testid="result-count"'):]
    assert table.index("TimeoutError") < table.index("KeyError")  # most recently seen first
    assert re.findall(r'data-testid="group-count">([\d,]+)<', page) == ["7", "3"]
    # The page's counts are the rollup's (not a count of the events): a rollup changed by hand shows.
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(update(ErrorRollup.__table__).where(ErrorRollup.fingerprint == FINGERPRINTS[1])
                           .values(occurrences=1234))
    page = admin_client.get("/admin/audit-logs/errors").get_data(as_text=True)
    assert re.findall(r'data-testid="group-count">([\d,]+)<', page) == ["1,234", "3"]
    # ... and a filter the rollup cannot answer counts the events.
    page = admin_client.get("/admin/audit-logs/errors?search=boom").get_data(as_text=True)
    assert re.findall(r'data-testid="group-count">([\d,]+)<', page) == ["7", "3"]


def test_the_dashboards_week_and_month_links_start_at_midnight_and_read_the_rollup(app, admin_client, monkeypatch):
    """The quick ranges of a week or more on the error dashboard are whole UTC days (its chart has a bar per
    day), so the rollup answers them; "24 hours" stays a rolling window, counted from the events."""
    write(app, [error_event(FINGERPRINTS[1], days_ago=d) for d in (0, 3, 12)])
    page = html.unescape(admin_client.get("/admin/audit-logs/errors").get_data(as_text=True))
    links = dict((label, since) for since, label in re.findall(r'href="[^"]*date_from=([^"&]+)[^"]*">([^<]+)</a>', page))
    today = utcnow().date()
    assert links["7 days"] == (today - timedelta(days=7)).isoformat()
    assert links["30 days"] == (today - timedelta(days=30)).isoformat()
    assert "T" in urllib.parse.unquote(links["24 hours"])

    used = []
    real = dashboard.from_rollup
    monkeypatch.setattr(dashboard, "from_rollup", lambda filters: used.append(real(filters)) or used[-1])
    page = admin_client.get(f"/admin/audit-logs/errors?date_from={links['7 days']}").get_data(as_text=True)
    assert re.findall(r'data-testid="group-count">([\d,]+)<', page) == ["2"]
    assert used and all(used)


def test_a_users_page_links_to_the_errors_in_their_requests(app, admin_client, make_user):
    alice = make_user("alice")
    write(app, [{**error_event(FINGERPRINTS[1], error_type="TimeoutError"), "user_id": alice} for _ in range(2)])
    write(app, [error_event(FINGERPRINTS[2], error_type="KeyError")])  # nobody's

    page = admin_client.get(f"/admin/users/{alice}").get_data(as_text=True)
    link = html.unescape(re.search(r'href="([^"]+)" data-testid="user-errors"', page).group(1))
    assert link == f"/admin/audit-logs/errors?user_id={alice}"

    errors_page = admin_client.get(link).get_data(as_text=True)
    table = errors_page[errors_page.index('data-testid="result-count"'):]
    assert "TimeoutError" in table and "KeyError" not in table
    assert re.findall(r'data-testid="group-count">([\d,]+)<', errors_page) == ["2"]
