"""The app served over real HTTP for tests that need a real server (browser tests, documented commands).

``live_app`` (one per test worker and session) runs gunicorn on a free 127.0.0.1 port against a database of
its own: a fresh SQLite file, or a dedicated PostgreSQL database when TEST_DATABASE_URL is set. It is
migrated with ``flask db upgrade`` and has an admin and a normal user made with ``flask users ...``; a test
that changes an account's password or deletes it makes its own with ``live_app.create_user``.
Loaded as a plugin by tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from audit_portal.database import normalise_database_url
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 30


@dataclass(frozen=True)
class Account:
    username: str
    password: str = PASSWORD


@dataclass
class LiveApp:
    """A running server: its base URL, its accounts, and the ``flask`` CLI pointed at its database."""

    url: str
    env: dict
    log_path: Path
    admin: Account = field(default_factory=lambda: Account("admin"))
    user: Account = field(default_factory=lambda: Account("alice"))

    def flask(self, *args: str) -> str:
        """Run ``flask --app wsgi ARGS`` against this server's database; return its output."""
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result.stdout

    def create_user(self, username: str, role: str = "user", password: str = PASSWORD) -> Account:
        self.flask("users", "create", "--username", username, "--password", password,
                   "--email", f"{username}@example.com", "--role", role)
        return Account(username, password)


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@contextlib.contextmanager
def fresh_postgres_database(base: str, suffix: str):
    """A new PostgreSQL database beside TEST_DATABASE_URL's (``<name>_<suffix>_<worker>_<run>``), dropped after."""
    base_url = make_url(normalise_database_url(base))
    name = f"{base_url.database or 'test'}_{suffix}_{_worker()}_{os.getppid() if _worker() != 'main' else os.getpid()}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def live_database_url(tmp_path_factory):
    """A fresh SQLite file, or a PostgreSQL database of this worker's own (created here, dropped at the end)."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('live-db') / 'audit_portal.db'}"
        return
    with fresh_postgres_database(base, "live") as url:
        yield url


def _listening_socket() -> socket.socket:
    """A socket on a free loopback port, handed to gunicorn as ``fd://``: no race for the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def spawn_gunicorn(env: dict, log_path: Path, *options: str, new_session: bool = False) -> tuple[subprocess.Popen, str]:
    """Start gunicorn (``gunicorn.conf.py``, then ``options``) on a free loopback port, its output in ``log_path``;
    returns the process and its base URL at once (``_wait_until_healthy`` waits for it). ``new_session``: in a
    process group of its own, so that a test can kill the whole server, workers included, as a machine's loss would.
    Without gunicorn's control socket: its one default path (~/.gunicorn/gunicorn.ctl) would be shared by every
    server on the machine, other test runs' included."""
    sock = _listening_socket()
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", f"--bind=fd://{sock.fileno()}",
               "--no-control-socket", *options, "wsgi:app"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                pass_fds=(sock.fileno(),), start_new_session=new_session)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    return proc, url


def _wait_until_healthy(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310 - our own server
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}/healthz did not answer 200 within {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM first, so the workers write their queued audit events, as in production."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def live_app(live_database_url, tmp_path_factory):
    """The app under gunicorn on a free 127.0.0.1 port, with an admin and a normal user."""
    tmp = tmp_path_factory.mktemp("live-app")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FLASK_APP", "FLASK_DEBUG"}}
    env.update(APP_ENV="testing", DATABASE_URL=live_database_url, AUDIT_DATA_DIR=str(tmp / "audit-data"),
               SECRET_KEY="browser-test-secret-key-long-enough-0000", PYTHONUNBUFFERED="1")
    log_path = tmp / "server.log"
    live = LiveApp(url="", env=env, log_path=log_path)
    live.flask("db", "upgrade")
    live.flask("users", "create-admin", "--username", live.admin.username, "--password", live.admin.password,
               "--email", "admin@example.com", "--full-name", "Ada Admin")
    live.create_user(live.user.username)

    # gthread, not the production sync worker: Chromium opens speculative connections that it may never
    # use, and each would hold a sync worker until its timeout.
    proc, live.url = spawn_gunicorn(env, log_path, "--workers=1", "--worker-class=gthread", "--threads=8",
                                    "--graceful-timeout=5")
    try:
        _wait_until_healthy(live.url, proc, log_path)
        yield live
    finally:
        _stop(proc)


