"""Shared fixtures: an app with its own empty database per test (SQLite by default, PostgreSQL when
TEST_DATABASE_URL is set), a client, a CLI runner, users built through the services, and helpers to
log in and to read the audit log."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from audit_portal import create_app
from audit_portal.audit.record.models import AuditLog
from audit_portal.database import normalise_database_url
from audit_portal.extensions import db
from audit_portal.users import services as user_services

pytest_plugins = ["tests.live_server"]

PASSWORD = "s3cure-Passw0rd!"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
#: Where the browser tests save screenshots (gitignored); the SCREENSHOT_DIR environment variable moves it.
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR") or Path(__file__).resolve().parents[1] / "test-artifacts/screenshots")
_SESSION_START = time.time()


def pytest_terminal_summary(terminalreporter):
    """Say where this run's browser screenshots are (here, because with xdist only this process reports)."""
    if SCREENSHOT_DIR.is_dir() and any(p.stat().st_mtime >= _SESSION_START - 1 for p in SCREENSHOT_DIR.glob("*.png")):
        terminalreporter.write_line(f"browser test screenshots: {SCREENSHOT_DIR}")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(autouse=True)
def _push_request_context():
    """Replaces pytest-flask's fixture of this name, which keeps one request context (and so one ``g``)
    alive across every request a test makes; each request here gets its own, as in production."""
    yield


@pytest.fixture(scope="session")
def postgres_url():
    """A database of this test worker's own on the PostgreSQL server named by TEST_DATABASE_URL."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield None
        return
    base_url = make_url(normalise_database_url(base))
    # The run's own pid in the name: two runs on one server (two developers, CI) never share a database.
    name = f"{base_url.database or 'test'}_ap_{_worker()}_{os.getppid() if _worker() != 'main' else os.getpid()}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(postgres_url, tmp_path):
    return postgres_url or f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def app_config(database_url, tmp_path):
    """Settings for the app under test; a test may change them before asking for ``app``."""
    return {
        "APP_ENV": "testing",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "AUDIT_DATA_DIR": str(tmp_path / "audit-data"),
        "SECRET_KEY": "test-secret-key-that-is-long-enough-000000",
    }


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.drop_all()
        db.create_all()
        user_services.ensure_default_roles()
        db.session.commit()
    yield app
    app.extensions["audit_writer"].close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """Replaces pytest-flask's ``client``, whose ``with`` block keeps the last request's context (and its
    logged-in user in ``g``) pushed, where it leaks into requests made by other clients."""
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    """Create a user through the same service the UI uses."""

    def make(username="alice", role="user", password=PASSWORD, email=None, **fields):
        with app.app_context():
            user = user_services.create_user(
                None, username=username, email=email or f"{username}@example.com", password=password, role=role,
                **fields,
            )
            db.session.commit()
            return user.id

    return make


@pytest.fixture
def admin_id(make_user):
    return make_user("admin", role="admin")


def csrf_token(client, url="/auth/login") -> str:
    page = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(page)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


class AuthActions:
    """Log in and out through the real forms."""

    def __init__(self, client):
        self.client = client

    def login(self, username="admin", password=PASSWORD, **kwargs):
        token = csrf_token(self.client)
        return self.client.post(
            "/auth/login", data={"username": username, "password": password, "csrf_token": token}, **kwargs
        )

    def logout(self):
        token = csrf_token(self.client, "/auth/password")
        return self.client.post("/auth/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def admin_client(client, auth, admin_id):
    """A client logged in as an admin."""
    response = auth.login("admin")
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def audit_rows(app):
    """Flush the background writer, then return the audit rows (oldest first) matching ``filters``."""

    def rows(**filters):
        assert app.extensions["audit_writer"].flush(), "audit writer did not drain"
        with app.app_context():
            query = select(AuditLog).order_by(AuditLog.id)
            for name, value in filters.items():
                query = query.where(getattr(AuditLog, name) == value)
            result = list(db.session.scalars(query))
            db.session.expunge_all()
            return result

    return rows


def form_post(client, url, data, token_url=None):
    """POST a form with a valid CSRF token taken from ``token_url`` (default: the same URL)."""
    return client.post(url, data={**data, "csrf_token": csrf_token(client, token_url or url)})
