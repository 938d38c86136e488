"""``flask users ...``: accounts from the command line, and clear errors for bad arguments."""

import re

import pytest
from sqlalchemy import select

from audit_portal.audit.record.models import AuditLog
from audit_portal.extensions import db
from audit_portal.users.models import User
from audit_portal.users.passwords import verify_password
from tests.conftest import PASSWORD


def stored(app, username):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            return None
        return {"role": user.role.name, "email": user.email, "status": user.status, "is_active": user.is_active,
                "password_ok": verify_password(user.password_hash, PASSWORD)}


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(db.func.count(User.id)))


def assert_clean_failure(result, message: str):
    """A non-zero exit with the message, and no traceback."""
    assert result.exit_code != 0, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_create_admin(app, runner):
    result = runner.invoke(args=["users", "create-admin", "--username", "root", "--password", PASSWORD,
                                 "--email", "Root@Example.com"])
    assert result.exit_code == 0, result.output
    assert "Created admin root" in result.output
    assert stored(app, "root") == {"role": "admin", "email": "root@example.com", "status": "active",
                                   "is_active": True, "password_ok": True}
    assert app.extensions["audit_writer"].flush()
    with app.app_context():
        row = db.session.scalar(select(AuditLog).where(AuditLog.action_type == "CREATE"))
        assert row.user_id is None and "the command line" in row.description
        assert PASSWORD not in str(row.event_metadata)


@pytest.mark.parametrize(("extra", "role"), [([], "user"), (["--role", "admin"], "admin"), (["--role", "USER"], "user")])
def test_create_with_role(app, runner, extra, role):
    result = runner.invoke(args=["users", "create", "--username", "bob", "--password", PASSWORD,
                                 "--email", "bob@example.com", *extra])
    assert result.exit_code == 0, result.output
    assert stored(app, "bob")["role"] == role


def test_a_created_user_can_log_in(runner, auth):
    runner.invoke(args=["users", "create", "--username", "bob", "--password", PASSWORD, "--email", "bob@example.com"])
    assert auth.login("bob").status_code == 302


@pytest.mark.parametrize(("command", "overrides", "message"), [
    ("create-admin", {"--username": ""}, "username: Username must be 3 to 64 characters"),
    ("create-admin", {"--username": "   "}, "username: Username must be 3 to 64 characters"),
    ("create", {"--username": "no spaces allowed"}, "username: Username must be 3 to 64 characters"),
    ("create-admin", {"--password": "short"}, "password: Password must be at least 10 characters long."),
    ("create", {"--password": "bob-is-the-best"}, "password: Password must not contain the username."),
    ("create", {"--email": "bob-at-example"}, "email: Enter a valid email address."),
    ("create", {"--email": ""}, "email: Enter a valid email address."),
    ("create", {"--role": "superuser"}, "role: Unknown role 'superuser'; allowed: admin, user."),
    ("create-admin", {"--username": "ADMIN"}, "username: The username 'ADMIN' is already taken."),
    ("create", {"--email": "ADMIN@example.com"}, "email: The email 'admin@example.com' is already in use."),
])
def test_bad_arguments_give_a_clear_message(app, runner, admin_id, command, overrides, message):
    options = {"--username": "bob", "--password": PASSWORD, "--email": "bob@example.com", **overrides}
    args = ["users", command] + [part for item in options.items() for part in item]
    result = runner.invoke(args=args)
    assert_clean_failure(result, message)
    assert user_count(app) == 1


@pytest.mark.parametrize("missing", ["--username", "--password", "--email"])
def test_a_missing_option_is_named(app, runner, missing):
    options = {"--username": "bob", "--password": PASSWORD, "--email": "bob@example.com"}
    del options[missing]
    result = runner.invoke(args=["users", "create", *[p for item in options.items() for p in item]])
    assert_clean_failure(result, f"Missing option '{missing}'")
    assert user_count(app) == 0


# -- ensure-admin ------------------------------------------------------------------------------


def create_user(runner, username, role):
    args = ["users", "create", "--username", username, "--password", PASSWORD, "--email", f"{username}@example.com",
            "--role", role]
    assert runner.invoke(args=args).exit_code == 0


@pytest.fixture
def env_runner(request, monkeypatch):
    """A runner for an app built after the test has set environment variables (so the test must not
    ask for ``app`` or a fixture that builds it, such as ``make_user``)."""

    def make(**environ):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return request.getfixturevalue("runner")

    return make


@pytest.fixture
def no_admin_env(monkeypatch):
    """No ADMIN_* settings from the environment (list this fixture before ``app``)."""
    for name in ("ADMIN_USERNAME", "ADMIN_PASSWORD", "ADMIN_EMAIL"):
        monkeypatch.delenv(name, raising=False)


def test_ensure_admin_from_the_environment(env_runner):
    runner = env_runner(ADMIN_USERNAME="boss", ADMIN_PASSWORD=PASSWORD, ADMIN_EMAIL="boss@corp.example")
    app = runner.app
    result = runner.invoke(args=["users", "ensure-admin"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert stored(app, "boss") == {"role": "admin", "email": "boss@corp.example", "status": "active",
                                   "is_active": True, "password_ok": True}
    again = runner.invoke(args=["users", "ensure-admin"])
    assert again.exit_code == 0 and "already exists" in again.output
    assert user_count(app) == 1


def test_ensure_admin_with_a_weak_password_fails_clearly(env_runner):
    runner = env_runner(ADMIN_USERNAME="boss", ADMIN_PASSWORD="weak")
    result = runner.invoke(args=["users", "ensure-admin"])
    assert_clean_failure(result, "password: Password must be at least 10 characters long.")
    assert user_count(runner.app) == 0


def test_ensure_admin_generates_a_password_once(no_admin_env, runner, auth):
    result = runner.invoke(args=["users", "ensure-admin"])
    assert result.exit_code == 0, result.output
    [password] = re.findall(r"password: (\S+)", result.output)
    assert len(password) >= 16
    assert "shown only once" in result.output
    assert auth.login("admin", password).status_code == 302

    again = runner.invoke(args=["users", "ensure-admin"])
    assert again.exit_code == 0
    assert "An administrator already exists." in again.output
    assert password not in again.output and "password:" not in again.output
    assert user_count(runner.app) == 1


def test_ensure_admin_creates_nothing_when_an_admin_exists(no_admin_env, app, runner, admin_id):
    result = runner.invoke(args=["users", "ensure-admin"])
    assert result.exit_code == 0
    assert "password:" not in result.output
    assert user_count(app) == 1


@pytest.mark.parametrize("name", ["bob", "BOB"])
def test_ensure_admin_does_not_mistake_a_plain_user_for_an_admin(env_runner, name):
    runner = env_runner(ADMIN_USERNAME=name, ADMIN_PASSWORD=PASSWORD)
    create_user(runner, "bob", "user")
    result = runner.invoke(args=["users", "ensure-admin"])
    assert_clean_failure(result, "User bob exists but is not an administrator")
    assert "Administrator" not in result.output
    assert stored(runner.app, "bob")["role"] == "user"


def test_ensure_admin_matches_the_username_ignoring_case(env_runner):
    runner = env_runner(ADMIN_USERNAME="Admin", ADMIN_PASSWORD=PASSWORD)
    create_user(runner, "admin", "admin")
    result = runner.invoke(args=["users", "ensure-admin"])
    assert result.exit_code == 0, result.output
    assert "Administrator admin already exists." in result.output
    assert user_count(runner.app) == 1


def test_ensure_admin_needs_username_and_password_together(app, runner):
    app.config.update(ADMIN_USERNAME="boss", ADMIN_PASSWORD="")
    result = runner.invoke(args=["users", "ensure-admin"])
    assert result.exit_code == 2
    assert "set ADMIN_PASSWORD too" in result.output
