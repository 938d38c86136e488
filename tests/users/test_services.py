"""The operations in audit_portal/users/services.py and the rules in users/rules.py, called the way views, API
and commands call them."""

import pytest
from sqlalchemy import select

from audit_portal.audit.record.models import AuditLog
from audit_portal.auth.services import authenticate
from audit_portal.extensions import db
from audit_portal.users import services
from audit_portal.users.models import User
from audit_portal.users.services import ServiceError
from tests.conftest import PASSWORD


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def user(username: str) -> User:
    return db.session.scalar(select(User).where(User.username == username))


def create(username="carol", email=None, password=PASSWORD, **fields) -> User:
    return services.create_user(None, username=username, email=email or f"{username}@example.com",
                                password=password, **fields)


def assert_refused(field: str, message: str, action, *args, **kwargs):
    with pytest.raises(ServiceError, match=message) as info:
        action(*args, **kwargs)
    assert info.value.field == field
    db.session.rollback()


# -- uniqueness ------------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "email", "field"), [
    ("Alice", "new@example.com", "username"),
    ("ALICE", "new@example.com", "username"),
    ("alice2", "ALICE@example.com", "email"),
    ("alice2", " alice@example.com ", "email"),
])
def test_create_refuses_duplicates_ignoring_case(make_user, ctx, username, email, field):
    make_user("alice")
    assert_refused(field, "already", create, username, email)
    assert db.session.scalar(select(db.func.count(User.id))) == 1


def test_update_refuses_another_users_username_or_email(make_user, admin_id, ctx):
    make_user("alice")
    make_user("bob")
    admin, bob = user("admin"), user("bob")
    assert_refused("username", "already taken", services.update_user, admin, bob, username="Alice")
    assert_refused("email", "already in use", services.update_user, admin, bob, email="Alice@Example.com")
    bob = user("bob")
    services.update_user(admin, bob, username="BOB", email="bob@example.com")  # its own name, new case: fine
    db.session.commit()
    assert user("BOB").email == "bob@example.com"


def test_a_change_and_its_audit_row_commit_together(make_user, admin_id, ctx):
    make_user("bob")
    services.set_active(user("admin"), user("bob"), False)
    db.session.rollback()
    assert user("bob").is_active is True
    assert db.session.scalar(select(AuditLog).where(AuditLog.action_type == "DEACTIVATE")) is None


# -- yourself --------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "message", "action"), [
    ("user", "You cannot delete your own account.", lambda me: services.delete_user(me, me)),
    ("is_active", "You cannot deactivate your own account.", lambda me: services.set_active(me, me, False)),
    ("status", "You cannot suspend", lambda me: services.change_status(me, me, "suspended")),
    ("status", "You cannot suspend", lambda me: services.change_status(me, me, "pending")),
])
def test_an_admin_cannot_remove_themself(make_user, admin_id, ctx, field, message, action):
    make_user("second", role="admin")  # so the last-admin rule is not what refuses
    assert_refused(field, message, action, user("admin"))
    me = user("admin")
    assert (me.is_active, me.status) == (True, "active")


# -- the last active admin -------------------------------------------------------------------


@pytest.mark.parametrize(("field", "action"), [
    ("role", lambda actor, target: services.change_role(actor, target, "user")),
    ("role", lambda actor, target: services.update_user(actor, target, role="user")),
    ("is_active", lambda actor, target: services.set_active(actor, target, False)),
    ("status", lambda actor, target: services.change_status(actor, target, "suspended")),
    ("status", lambda actor, target: services.change_status(actor, target, "pending")),
    ("user", lambda actor, target: services.delete_user(actor, target)),
])
def test_the_last_active_admin_cannot_be_removed(make_user, admin_id, ctx, field, action):
    # Other admins that cannot log in do not count; the actor is someone else, so the self rules
    # do not apply (a second channel such as the API or a script could try this).
    make_user("parked", role="admin", status="suspended")
    make_user("sleepy", role="admin", is_active=False)
    make_user("bob")
    assert_refused(field, "last active administrator", action, user("bob"), user("admin"))
    admin = user("admin")
    assert (admin.role.name, admin.is_active, admin.status) == ("admin", True, "active")


def test_the_last_admin_cannot_demote_themself(admin_id, ctx):
    admin = user("admin")
    assert_refused("role", "last active administrator", services.change_role, admin, admin, "user")


def test_with_two_active_admins_either_can_be_demoted_or_removed(make_user, admin_id, ctx):
    make_user("second", role="admin")
    make_user("third", role="admin")
    admin = user("admin")
    services.change_role(admin, user("second"), "user")
    services.set_active(admin, user("third"), False)
    db.session.commit()
    assert user("second").role.name == "user"
    assert user("third").is_active is False
    # Now admin is the only active one left.
    assert_refused("role", "last active administrator", services.change_role, admin, admin, "user")


def test_admins_who_cannot_log_in_can_go_while_one_active_admin_remains(make_user, admin_id, ctx):
    parked_id = make_user("parked", role="admin", status="suspended")
    make_user("sleepy", role="admin", is_active=False)
    make_user("pending", role="admin", status="pending")
    admin = user("admin")
    services.delete_user(admin, user("parked"))
    services.change_role(admin, user("sleepy"), "user")
    services.change_status(admin, user("pending"), "suspended")
    db.session.commit()
    assert db.session.get(User, parked_id) is None
    assert user("sleepy").role.name == "user"
    assert user("pending").status == "suspended"


def test_an_unknown_role_or_status_names_the_allowed_values(make_user, admin_id, ctx):
    make_user("bob")
    assert_refused("role", "Unknown role 'root'; allowed: admin, user.", create, role="root")
    assert_refused("status", "Unknown status 'gone'; allowed: active, pending, suspended.", create, status="gone")
    assert_refused("role", "Unknown role", services.change_role, user("admin"), user("bob"), "owner")
    assert_refused("status", "Unknown status", services.change_status, user("admin"), user("bob"), "gone")


def test_role_and_status_values_are_case_insensitive(make_user, admin_id, ctx):
    make_user("bob")
    services.change_role(user("admin"), user("bob"), " Admin ")
    services.change_status(user("admin"), user("bob"), "PENDING")
    db.session.commit()
    bob = user("bob")
    assert (bob.role.name, bob.status) == ("admin", "pending")


# -- passwords -------------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "message"), [
    ("", "at least 10 characters"),
    ("nine-char", "at least 10 characters"),
    ("x1" * 129, "at most 256 characters"),
    ("my-CAROL-password", "must not contain the username"),
    ("aaaaaaaaaaaaaaaa", "too simple"),
    ("abcabcabcabc", "too simple"),
])
def test_weak_passwords_are_refused(make_user, admin_id, ctx, password, message):
    assert_refused("password", message, create, password=password)
    make_user("carol")
    assert_refused("password", message, services.reset_password, user("admin"), user("carol"), password)


@pytest.mark.parametrize("password", ["abcd-efgh-1", "correct horse battery staple", "p" * 5 + "ässwörd!"])
def test_reasonable_passwords_are_accepted(ctx, password):
    carol = create(password=password)
    assert carol.password_hash.startswith("$argon2id$")
    assert password not in carol.password_hash


def test_minimum_length_comes_from_the_configuration(app, ctx):
    app.config["PASSWORD_MIN_LENGTH"] = 16
    assert_refused("password", "at least 16 characters", create, password="fifteen-chars-1")
    create(password="sixteen-chars-12")


# -- deleting keeps the trail ----------------------------------------------------------------


def test_deleting_a_user_keeps_their_audit_events(app, make_user, admin_id, ctx):
    bob_id = make_user("bob")
    authenticate("bob", PASSWORD)  # bob's own LOGIN event
    db.session.commit()
    assert app.extensions["audit_writer"].flush()
    login = db.session.scalar(select(AuditLog).where(AuditLog.action_type == "LOGIN"))
    assert (login.user_id, login.username) == (bob_id, "bob")

    services.delete_user(user("admin"), user("bob"))
    db.session.commit()
    assert app.extensions["audit_writer"].flush()
    db.session.expire_all()
    assert db.session.get(User, bob_id) is None
    login = db.session.get(AuditLog, login.id)
    assert login is not None
    assert login.user_id is None and login.username == "bob"
    delete = db.session.scalar(select(AuditLog).where(AuditLog.action_type == "DELETE"))
    assert delete.resource_id == str(bob_id) and delete.user_id == admin_id
    assert delete.event_metadata["old"] == {"username": "bob", "email": "bob@example.com", "role": "user",
                                            "status": "active"}
