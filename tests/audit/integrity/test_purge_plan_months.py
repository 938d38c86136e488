"""The purge plan's proof that a month may go whole (PostgreSQL partitions): it reads indexes instead of the month's
rows, so each way a row can have to stay is checked here on its own, and the plan's figures (what the purge
reports and records) are the same whether its months go whole or in batches."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from audit_portal.audit.integrity import purge_plan
from audit_portal.audit.integrity.holds import add_hold
from audit_portal.audit.record import partitions
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.inserts import insert_events
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ..chain_support import LOGS, seal

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="partitions are PostgreSQL's: set TEST_DATABASE_URL"),
]

NOW = utcnow()
#: Two whole months past a 400-day cutoff, and one young event.
OLD = NOW - timedelta(days=500)
OLDER = NOW - timedelta(days=560)
#: A month about 200 days back, and a retention for requests whose cutoff falls in its middle (day 16 or 17).
MONTH = partitions.month_of(NOW - timedelta(days=200))
MONTH_START = datetime(MONTH.year, MONTH.month, 1, tzinfo=UTC)
REQUEST_DAYS = (NOW - (MONTH_START + timedelta(days=15))).days
REQUEST_CUTOFF = NOW - timedelta(days=REQUEST_DAYS)


def event(moment, description: str, action=ActionType.UPDATE, resource=ResourceType.SETTING) -> dict:
    return build_event(action, resource, "x", description, timestamp=moment)


def write(app, events: list[dict]) -> None:
    with app.app_context(), db.engine.begin() as connection:
        insert_events(connection, events)


def month_name(moment) -> str:
    return partitions.partition_name(partitions.month_of(moment))


def plan(app, days: int | None = 400) -> purge_plan.PurgePlan:
    with app.app_context():
        made = purge_plan.plan_purge(days)
        db.session.remove()
    return made


def drops(app, made: purge_plan.PurgePlan) -> list[str]:
    """The months ``made`` would drop whole (with events in them), planned again on today's rows."""
    with app.app_context(), db.engine.connect() as conn:
        return [drop.name for drop in purge_plan.droppable(conn, made) if drop.count]


@pytest.fixture()
def two_old_months(app):
    write(app, [event(OLD + timedelta(minutes=i), f"old {i}") for i in range(4)]
          + [event(OLDER + timedelta(minutes=i), f"older {i}", ActionType.REQUEST, ResourceType.REQUEST)
             for i in range(3)]
          + [event(NOW - timedelta(days=2), "young")])
    seal(app)
    return month_name(OLD), month_name(OLDER)


def test_the_figures_are_the_same_whether_months_go_whole_or_in_batches(app, monkeypatch, two_old_months):
    cutoff = NOW - timedelta(days=400)
    write(app, [event(cutoff - timedelta(minutes=1), "past, beside young rows"),
                event(cutoff + timedelta(minutes=1), "young, in the cutoff's month")])
    seal(app)
    whole = plan(app)
    assert set(two_old_months) <= {drop.name for drop in whole.drops if drop.count}
    monkeypatch.setattr(purge_plan, "droppable", lambda *args: [])
    batches = plan(app)
    assert not batches.drops
    figures = ("count", "by_category", "first_timestamp", "last_timestamp", "last_seq", "held", "head_seq")
    assert {f: getattr(whole, f) for f in figures} == {f: getattr(batches, f) for f in figures}
    assert whole.count == 8 and whole.by_category == {"requests": 3, "data": 5}


def test_an_event_not_yet_sealed_keeps_its_month(app, two_old_months):
    old, older = two_old_months
    made = plan(app)
    write(app, [event(OLD + timedelta(hours=1), "arrived after the plan sealed")])
    assert drops(app, made) == [older]  # no link at all
    seal(app)
    assert drops(app, made) == [older]  # linked now, but after the plan's head
    assert sorted(drops(app, plan(app))) == sorted([old, older])


def test_a_link_past_the_plans_head_keeps_its_month(app, two_old_months):
    made = plan(app)
    first = min((drop for drop in made.drops if drop.count), key=lambda drop: drop.last_seq)  # sealed first
    assert sorted(drop.name for drop in made.drops if drop.count) == sorted(two_old_months)
    assert drops(app, dataclasses.replace(made, head_seq=first.last_seq - 1)) == []
    assert drops(app, dataclasses.replace(made, head_seq=first.last_seq)) == [first.name]


def test_a_hold_keeps_the_month_it_touches_and_only_if_it_holds_a_row(app, two_old_months):
    old, older = two_old_months
    with app.app_context():
        add_hold(None, OLD + timedelta(minutes=2), OLD + timedelta(minutes=2), "Case 1")  # one row exactly
        add_hold(None, OLDER + timedelta(hours=5), OLDER + timedelta(hours=6), "Case 2")  # no row of its month
        db.session.commit()
    made = plan(app)
    assert [drop.name for drop in made.drops if drop.count] == [older]
    assert made.held == 1


@pytest.mark.settings(AUDIT_RETENTION_DAYS=400, AUDIT_RETENTION_DAYS_BY_CATEGORY="requests=540")
def test_an_event_of_a_category_kept_longer_than_the_months_age_keeps_it(app, two_old_months):
    old, older = two_old_months
    # Requests are kept 540 days: OLDER's requests are 560 days old (past), so OLDER still goes whole.
    assert sorted(drop.name for drop in plan(app, None).drops if drop.count) == sorted([old, older])
    write(app, [event(OLD + timedelta(minutes=9), "a young request", ActionType.REQUEST, ResourceType.REQUEST)])
    seal(app)
    made = plan(app, None)
    assert [drop.name for drop in made.drops if drop.count] == [older]
    assert made.by_category == {"requests": 3, "data": 4}


def test_an_event_verification_anchors_on_keeps_its_month(app, two_old_months):
    old, older = two_old_months
    made = plan(app)
    with app.app_context(), db.engine.connect() as conn:
        anchor = conn.scalar(select(LOGS.c.id).where(LOGS.c.description == "old 1"))
    assert drops(app, dataclasses.replace(made, kept=[anchor])) == [older]


def request(moment, description: str) -> dict:
    return event(moment, description, ActionType.REQUEST, ResourceType.REQUEST)


@pytest.fixture()
def month_of_past_requests(app):
    """The month about 200 days back holding only past events: requests before the requests' cutoff (inside the
    month), data events (kept 30 days)."""
    assert MONTH_START < REQUEST_CUTOFF - timedelta(days=2) and partitions.month_of(REQUEST_CUTOFF) == MONTH
    write(app, [request(MONTH_START + timedelta(days=1), "past request"),
                event(MONTH_START + timedelta(days=20), "past data"), event(NOW - timedelta(days=1), "young")])
    seal(app)
    return month_name(MONTH_START)


@pytest.mark.settings(AUDIT_RETENTION_DAYS=30, AUDIT_RETENTION_DAYS_BY_CATEGORY=f"requests={REQUEST_DAYS}")
def test_a_cutoff_inside_the_month_keeps_it_only_for_a_younger_event_of_its_category(app, month_of_past_requests):
    assert [drop.name for drop in plan(app, None).drops if drop.count] == [month_of_past_requests]
    write(app, [request(REQUEST_CUTOFF + timedelta(hours=2), "a request younger than its cutoff")])
    seal(app)
    made = plan(app, None)
    assert [drop.name for drop in made.drops if drop.count] == []
    assert made.by_category == {"requests": 1, "data": 1}  # what goes, in batches


@pytest.mark.settings(AUDIT_RETENTION_DAYS=30,
                      AUDIT_RETENTION_DAYS_BY_CATEGORY=f"requests={REQUEST_DAYS},security=2555")
def test_an_early_event_of_a_category_kept_for_years_keeps_the_month(app, month_of_past_requests):
    write(app, [event(MONTH_START + timedelta(hours=2), "password changed", ActionType.PASSWORD_CHANGE,
                      ResourceType.USER)])
    seal(app)
    assert [drop.name for drop in plan(app, None).drops if drop.count] == []


@pytest.mark.settings(AUDIT_RETENTION_DAYS=400, AUDIT_RETENTION_DAYS_BY_CATEGORY="requests=90")
def test_the_default_retention_keeps_a_month_whose_requests_are_past_theirs(app):
    """The usual shape: requests kept 90 days, everything else 400. A month of requests alone 150 days back goes
    whole; a month 200 days back with one other event stays, and only its requests go."""
    mixed, requests_only = NOW - timedelta(days=200), NOW - timedelta(days=150)
    write(app, [request(mixed, "old request"), event(mixed + timedelta(minutes=1), "data, kept 400 days"),
                request(requests_only, "request"), request(requests_only + timedelta(minutes=1), "request")])
    seal(app)
    made = plan(app, None)
    assert [drop.name for drop in made.drops if drop.count] == [month_name(requests_only)]
    assert made.count == 3 and made.by_category == {"requests": 3}


@pytest.mark.settings(AUDIT_RETENTION_DAYS=30, AUDIT_RETENTION_DAYS_BY_CATEGORY=f"requests={REQUEST_DAYS}")
def test_the_figures_are_the_same_either_way_with_a_retention_per_category(app, monkeypatch, month_of_past_requests):
    whole_month = NOW - timedelta(days=300)
    write(app, [request(whole_month, "past request"), event(whole_month, "past data"),
                request(REQUEST_CUTOFF - timedelta(hours=1), "past request beside a young one"),
                request(REQUEST_CUTOFF + timedelta(hours=2), "young request")])
    seal(app)
    whole = plan(app, None)
    assert [drop.name for drop in whole.drops if drop.count] == [month_name(whole_month)]
    monkeypatch.setattr(purge_plan, "droppable", lambda *args: [])
    batches = plan(app, None)
    figures = ("count", "by_category", "first_timestamp", "last_timestamp", "last_seq", "held", "head_seq")
    assert {f: getattr(whole, f) for f in figures} == {f: getattr(batches, f) for f in figures}


def test_an_event_arriving_while_its_month_is_proved_keeps_it(app, two_old_months):
    """The month's figures are read before its links: an event arriving in between has no link up to the head, so
    the month is not planned as a drop (with figures that would then leave that event out)."""
    old, older = two_old_months
    made = plan(app)
    arrived = []

    def arrive(connection, cursor, statement, *args):
        if not arrived and "GROUP BY" in statement and f"FROM {old}" in statement:
            arrived.append(statement)
            write(app, [event(OLD + timedelta(hours=3), "arrived between the figures and the links")])

    with app.app_context(), db.engine.connect() as conn:
        sa_event.listen(conn, "after_cursor_execute", arrive)
        proved = [drop.name for drop in purge_plan.droppable(conn, made) if drop.count]
    assert arrived
    assert proved == [older]
