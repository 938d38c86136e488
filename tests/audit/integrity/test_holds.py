"""Legal holds from the command line: `flask audit hold add|list|release`; bad input is a clear error and changes
nothing; placing and releasing a hold are in the trail, naming who did it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from audit_portal.audit.integrity.holds import active_holds
from audit_portal.audit.integrity.models import LegalHold
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.extensions import db


def hold_cli(runner, *args):
    return runner.invoke(args=["audit", "hold", *args])


def holds(app) -> list[LegalHold]:
    with app.app_context():
        found = list(db.session.scalars(select(LegalHold).order_by(LegalHold.id)))
        db.session.expunge_all()
        return found


def hold_events(audit_rows) -> list:
    return [r for r in audit_rows(resource_type=ResourceType.LEGAL_HOLD.value)]


def test_add_list_release_and_the_trail(app, runner, audit_rows, admin_id):
    added = hold_cli(runner, "add", "--from", "2026-01-01", "--to", "2026-03-31", "--reason", "Case 2026-17",
                     "--by", "admin")

    assert added.exit_code == 0, added.output
    [hold] = holds(app)
    assert f"Legal hold {hold.id} placed" in added.output
    assert hold.starts_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert hold.ends_at == datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)  # a date: its whole day
    assert (hold.created_by, hold.created_by_id, hold.reason) == ("admin", admin_id, "Case 2026-17")
    with app.app_context():
        assert active_holds(db.session) == [(hold.starts_at, hold.ends_at)]

    listed = hold_cli(runner, "list")
    assert listed.exit_code == 0 and "active" in listed.output and "Case 2026-17" in listed.output

    released = hold_cli(runner, "release", str(hold.id))
    assert released.exit_code == 0, released.output
    [hold] = holds(app)
    assert hold.released_at is not None and hold.released_by is None
    with app.app_context():
        assert active_holds(db.session) == []
    assert "released" in hold_cli(runner, "list").output
    assert hold_cli(runner, "list", "--active").output.strip() == "No legal holds."

    created, release = hold_events(audit_rows)
    assert created.action_type == ActionType.HOLD_CREATE.value and created.username == "admin"
    assert created.user_id == admin_id and created.resource_id == str(hold.id)
    assert "by admin" in created.description and created.event_metadata["reason"] == "Case 2026-17"
    assert release.action_type == ActionType.HOLD_RELEASE.value
    assert "by the command line" in release.description


def count_holds(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LegalHold))


def test_bad_input_is_a_clear_error_and_changes_nothing(app, runner, audit_rows):
    cases = [
        (["add", "--from", "2026-03-01", "--to", "2026-01-31", "--reason", "x"], "--from: The hold starts"),
        (["add", "--from", "2026-01-01", "--to", "2026-01-31", "--reason", "   "], "--reason: Say why"),
        (["add", "--from", "2026-01-01", "--to", "2026-01-31", "--reason", "x" * 501], "--reason:"),
        (["add", "--from", "yesterday", "--to", "2026-01-31", "--reason", "x"], "--from: Not a valid ISO 8601"),
        (["add", "--from", "2026-01-01", "--to", "2026-01-31", "--reason", "x", "--by", "nobody"],
         "--by: there is no user called 'nobody'"),
        (["release", "42"], "There is no legal hold with id 42"),
    ]
    for args, message in cases:
        result = hold_cli(runner, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert count_holds(app) == 0
    assert hold_events(audit_rows) == []


def test_releasing_twice_is_refused(app, runner, audit_rows):
    assert hold_cli(runner, "add", "--from", "2026-01-01T10:00:00Z", "--to", "2026-01-01T12:00:00+02:00",
                    "--reason", "Case 3").exit_code == 0
    [hold] = holds(app)
    assert hold.ends_at == datetime(2026, 1, 1, 10, tzinfo=UTC)  # equal ends are a valid (one-moment) hold
    assert hold_cli(runner, "release", str(hold.id)).exit_code == 0

    again = hold_cli(runner, "release", str(hold.id))

    assert again.exit_code == 2 and f"Legal hold {hold.id} was already released" in again.output
    assert [e.action_type for e in hold_events(audit_rows)] == ["HOLD_CREATE", "HOLD_RELEASE"]
