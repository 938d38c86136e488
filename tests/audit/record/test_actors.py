"""``audit_portal/audit/record/actors.py``: the audit package names users through the directory the app lends
it (auth's ``UserDirectory``), never through the user model."""

from __future__ import annotations

from audit_portal.audit import ActionType, ResourceType, log_audit
from audit_portal.audit.record.actors import EXTENSION_KEY, NoDirectory, directory, username_of
from audit_portal.extensions import db


def test_outside_an_app_nobody_is_known():
    assert isinstance(directory(), NoDirectory)
    assert username_of(1) is None


def test_the_app_lends_auths_directory(app, admin_id, make_user):
    bob_id = make_user("bob")
    with app.app_context():
        assert directory().names([admin_id, bob_id, 999_999]) == {admin_id: "admin", bob_id: "bob"}
        assert username_of(bob_id) == "bob"
        assert [username_of(value) for value in (999_999, True, "1", None)] == [None] * 4
        assert directory().some(1) == [(admin_id, "admin")]


def test_an_event_about_a_user_takes_their_name_from_the_directory(app, admin_id, audit_rows):
    with app.app_context():
        log_audit(admin_id, ActionType.UPDATE, ResourceType.SETTING, "theme", "Changed the theme",
                  transactional=True)
        app.extensions[EXTENSION_KEY] = NoDirectory()
        log_audit(admin_id, ActionType.UPDATE, ResourceType.SETTING, "theme", "Changed it again", transactional=True)
        db.session.commit()
    names = {row.description: row.username for row in audit_rows(action_type="UPDATE")}
    assert names == {"Changed the theme": "admin", "Changed it again": None}
