"""Password hashing: argon2id at OWASP's recommended cost everywhere but the test suite."""

import re

import pytest

from audit_portal import create_app
from audit_portal.users.passwords import hash_password, verify_password

HASH_RE = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
#: OWASP Password Storage Cheat Sheet: argon2id with m=19 MiB (19456 KiB), t=2, p=1.
OWASP = (19456, 2, 1)


def parameters(password_hash: str) -> tuple[int, int, int]:
    match = HASH_RE.match(password_hash)
    assert match, password_hash
    return tuple(int(part) for part in match.groups())


@pytest.fixture
def app_for(monkeypatch, tmp_path):
    for name in ("PASSWORD_HASH_MEMORY_KIB", "PASSWORD_HASH_TIME_COST", "PASSWORD_HASH_PARALLELISM"):
        monkeypatch.delenv(name, raising=False)

    def make(app_env):
        monkeypatch.setenv("SECRET_KEY", "s" * 40)
        monkeypatch.setenv("AUDIT_HMAC_KEY", "k" * 40)
        return create_app({"APP_ENV": app_env, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
                           "AUDIT_DATA_DIR": str(tmp_path)})

    return make


@pytest.mark.parametrize("app_env", ["production", "development"])
def test_real_configurations_hash_at_owasp_cost(app_for, app_env):
    app = app_for(app_env)
    with app.app_context():
        password_hash = hash_password("correct horse battery staple")
        assert parameters(password_hash) == OWASP
        assert verify_password(password_hash, "correct horse battery staple")
        assert not verify_password(password_hash, "correct horse battery stapler")
    app.extensions["audit_writer"].close()


def test_the_cheap_cost_is_only_for_the_test_suite(app):
    with app.app_context():
        password_hash = hash_password("correct horse battery staple")
    assert app.config["APP_ENV"] == "testing"
    memory, time_cost, parallelism = parameters(password_hash)
    assert (memory, time_cost) < OWASP[:2]


def test_a_hash_made_at_another_cost_still_verifies(app, app_for):
    production = app_for("production")
    with production.app_context():
        strong = hash_password("correct horse battery staple")
    production.extensions["audit_writer"].close()
    with app.app_context():
        assert verify_password(strong, "correct horse battery staple")
        assert not verify_password(strong, "wrong")


@pytest.mark.parametrize("garbage", ["", "not-a-hash", "$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA", "$2b$12$abc"])
def test_a_malformed_hash_is_a_failed_check_not_an_error(app, garbage):
    with app.app_context():
        assert verify_password(garbage, "anything") is False
