"""A client that goes away halfway through an export does not leave a transaction open in PostgreSQL.

The export streams from a server-side cursor inside a transaction. When the client closes the connection,
gunicorn's next write fails, it closes the response iterator, and the exporter's ``finally`` closes the cursor
and rolls back: nothing may stay "idle in transaction" (holding a snapshot, blocking VACUUM, using up the
pool). Served as in production (gunicorn, sync worker) against a PostgreSQL database of its own, with more
rows than the loopback socket buffers hold, so the server is still mid-export when the client closes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from audit_portal.database import normalise_database_url
from tests.live_server import ROOT, _listening_socket, _stop, _wait_until_healthy

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                       reason="needs PostgreSQL (pg_stat_activity): set TEST_DATABASE_URL"),
]

ROWS = 30_000  # about 12 MB of CSV: several times what the loopback socket buffers take in
READ_BYTES = 64 * 1024
RELEASE_WITHIN_S = 3.0


def _flask(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn (production config, one sync worker) on a database of its own with ROWS events; yields
    (port, token, engine on that database)."""
    base_url = make_url(normalise_database_url(os.environ["TEST_DATABASE_URL"]))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{base_url.database or 'test'}_disconnect_{worker}_{os.getpid()}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = base_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    tmp = tmp_path_factory.mktemp("export-disconnect")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FLASK_APP", "FLASK_DEBUG"}}
    env.update(APP_ENV="testing", DATABASE_URL=database_url, AUDIT_DATA_DIR=str(tmp / "audit-data"),
               SECRET_KEY="export-disconnect-test-secret-key-0000000", PYTHONUNBUFFERED="1")
    proc = None
    log_path = tmp / "server.log"
    try:
        _flask(env, "db", "upgrade")
        _flask(env, "users", "create-admin", "--username", "admin", "--password", "export-disconnect-pw-1",
               "--email", "admin@example.com")
        token = _flask(env, "tokens", "create", "--username", "admin").split()[0]
        _flask(env, "demo", "seed", "--count", str(ROWS), "--yes")
        sock = _listening_socket()
        port = sock.getsockname()[1]
        command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", f"--bind=fd://{sock.fileno()}",
                   "--workers=1", "--worker-class=sync", "--graceful-timeout=5", "--no-control-socket", "wsgi:app"]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    pass_fds=(sock.fileno(),))
        sock.close()
        _wait_until_healthy(f"http://127.0.0.1:{port}", proc, log_path)
        yield port, token, engine
    finally:
        if proc is not None:
            _stop(proc)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _request(port: int, path: str, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return sock


def _app_transactions(engine) -> list[str]:
    """States of the app's connections to the database that are inside a transaction."""
    with engine.connect() as conn:
        return list(conn.scalars(text(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (state LIKE 'idle in transaction%' OR state = 'active')")))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_client_that_goes_away_leaves_no_transaction_open(server, fmt):
    port, token, engine = server
    sock = _request(port, f"/api/v1/audit-logs/export?format={fmt}", token)
    try:
        received = b""
        while len(received) < READ_BYTES:
            data = sock.recv(16384)
            assert data, f"the server closed the connection after {len(received)} bytes"
            received += data
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
        # The server is mid-export with its cursor open (fetching a batch, or blocked on the full socket).
        assert _app_transactions(engine), "the export is not running: this test would prove nothing"
    finally:
        sock.close()  # unread data: the kernel answers with a reset, as when a browser cancels a download
    deadline = time.monotonic() + RELEASE_WITHIN_S
    while (states := _app_transactions(engine)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert states == [], f"still in a transaction {RELEASE_WITHIN_S} s after the client went away: {states}"

    # The worker carries on: the next export is served completely.
    sock = _request(port, f"/api/v1/audit-logs/export?format={fmt}&action_type=EXPORT", token)
    with sock:
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n0\r\n\r\n"), answer[-200:]
