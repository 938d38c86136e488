"""``audit_portal/metrics/families.py``: a domain event counts when its change commits, never when it rolls back."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.write.service import log_audit
from audit_portal.extensions import db

LABELS = {"action_type": "UPDATE", "status": "SUCCESS"}


def _written() -> float:
    return REGISTRY.get_sample_value("audit_events_written_total", LABELS) or 0.0


def _change(description: str) -> None:
    log_audit(None, ActionType.UPDATE, ResourceType.SETTING, "theme", description, transactional=True)


def test_a_domain_event_counts_when_its_transaction_commits_only(app):
    with app.app_context():
        before = _written()
        _change("rolled back")
        assert _written() == before  # not committed yet
        db.session.rollback()
        _change("rolled back with the session")
        db.session.close()
        _change("committed")
        _change("committed too")
        assert _written() == before
        db.session.commit()
        assert _written() == before + 2
        db.session.commit()  # nothing new: nothing counted twice
        assert _written() == before + 2


def test_a_domain_event_in_a_savepoint_that_rolls_back_is_not_counted(app):
    with app.app_context():
        before = _written()
        _change("kept")
        with pytest.raises(RuntimeError):
            with db.session.begin_nested():
                _change("rolled back with its savepoint")
                raise RuntimeError("a rule failed")
        with db.session.begin_nested():
            _change("released with its savepoint")
        db.session.commit()
        assert _written() == before + 2


@pytest.mark.settings(METRICS_ENABLED=False)
def test_nothing_is_counted_with_metrics_off(app):
    with app.app_context():
        before = _written()
        _change("not counted")
        db.session.commit()
        assert _written() == before
