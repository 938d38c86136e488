"""The tombstone rule (spec19.md): a missing event is explained only by a purge whose head reaches its link, whose
cutoff for its category (its own, else "*") is later than its time, and none of whose holds contains that time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from audit_portal.audit.integrity.models import AuditPurge
from audit_portal.audit.integrity.tombstones import as_record, load_purges, purge_covering
from audit_portal.extensions import db

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def body(id=1, head_seq=100, cutoffs=None, holds=()):
    return {"id": id, "at": T0.isoformat(), "head_seq": head_seq, "count": 1,
            "cutoffs": cutoffs or {"*": T0.isoformat()}, "holds": [[a.isoformat(), b.isoformat()] for a, b in holds]}


def test_a_purge_covers_an_event_older_than_its_cutoff_up_to_its_head():
    purges = [body()]
    assert purge_covering(purges, 100, T0 - timedelta(seconds=1), "data").id == 1
    assert purge_covering(purges, 101, T0 - timedelta(days=1), "data") is None  # sealed after the head it read
    assert purge_covering(purges, 5, T0, "data") is None  # not before the cutoff
    assert purge_covering(purges, 5, None, "data") is None  # a link without an event time


def test_a_category_with_its_own_cutoff_does_not_fall_back_to_the_default():
    purges = [body(cutoffs={"security": (T0 - timedelta(days=2000)).isoformat(), "*": T0.isoformat()})]
    assert purge_covering(purges, 1, T0 - timedelta(days=10), "security") is None
    assert purge_covering(purges, 1, T0 - timedelta(days=2001), "security").id == 1
    assert purge_covering(purges, 1, T0 - timedelta(days=10), "requests").id == 1
    only_own = [body(cutoffs={"requests": T0.isoformat()})]
    assert purge_covering(only_own, 1, T0 - timedelta(days=10), "data") is None


def test_a_hold_keeps_its_range_both_ends_included():
    start, end = T0 - timedelta(days=30), T0 - timedelta(days=20)
    purges = [body(holds=[(start, end)])]
    for moment in (start, end, start + timedelta(days=5)):
        assert purge_covering(purges, 1, moment, "data") is None
    assert purge_covering(purges, 1, start - timedelta(microseconds=1), "data").id == 1
    assert purge_covering(purges, 1, end + timedelta(microseconds=1), "data").id == 1


def test_any_purge_may_cover_it():
    """A hold placed later (the newest purge keeps its range) does not unexplain what an older purge removed."""
    old = body(id=1, head_seq=50)
    new = body(id=2, head_seq=90, cutoffs={"*": (T0 + timedelta(days=30)).isoformat()},
               holds=[(T0 - timedelta(days=10), T0 - timedelta(days=5))])
    assert purge_covering([new, old], 40, T0 - timedelta(days=7), "data").id == 1
    assert purge_covering([new, old], 60, T0 - timedelta(days=7), "data") is None
    assert purge_covering([new, old], 60, T0 + timedelta(days=1), "data").id == 2


def test_load_purges_reads_the_table_newest_first(app):
    with app.app_context(), db.engine.begin() as conn:
        for purge in (body(id=1, head_seq=10), body(id=2, head_seq=20)):
            conn.execute(insert(AuditPurge.__table__).values(**{**purge, "at": T0}))
    with app.app_context(), db.engine.connect() as conn:
        purges = load_purges(conn)
    assert [p.id for p in purges] == [2, 1]
    assert purges[0].cutoffs == {"*": T0} and purges[0].holds == ()
    assert as_record(purges[0].as_body()) == purges[0]
    assert purge_covering(purges, 15, T0 - timedelta(days=1), "data").id == 2


def test_the_offline_verifier_applies_the_same_rule():
    """scripts/verify_audit_export.py carries its own copy of the rule (it imports nothing from the portal): both
    give the same answer on every combination of head, category, cutoff and hold."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "scripts" / "verify_audit_export.py"
    spec = importlib.util.spec_from_file_location("verify_audit_export", path)
    offline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(offline)
    purges = [body(id=1, head_seq=50, cutoffs={"requests": (T0 - timedelta(days=90)).isoformat(),
                                               "*": (T0 - timedelta(days=365)).isoformat()}),
              body(id=2, head_seq=80, cutoffs={"security": (T0 - timedelta(days=2555)).isoformat(),
                                               "*": (T0 - timedelta(days=180)).isoformat()},
                   holds=[(T0 - timedelta(days=400), T0 - timedelta(days=300))])]
    for seq in (10, 50, 51, 80, 81):
        for category in ("requests", "security", "data", None):
            for days in (30, 100, 200, 350, 400, 500, 3000):
                moment = T0 - timedelta(days=days)
                mine = purge_covering(purges, seq, moment, category)
                theirs = offline.purged_by(purges, seq, moment.isoformat(), category)
                assert (mine.id if mine else None) == (theirs["id"] if theirs else None), (seq, category, days)
