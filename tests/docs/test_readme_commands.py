"""The commands in README.md and docs/api.md work as written against a started app."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCUMENTED_BASE = "http://127.0.0.1:5000"


def _shell_block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _login(base: str, username: str, password: str) -> int:
    """Log in through the HTML form like a browser: GET for the CSRF token, then POST."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()),
                                         _NoRedirect())
    page = opener.open(f"{base}/auth/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token}).encode()
    try:
        return opener.open(f"{base}/auth/login", data=data, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.skipif(os.environ.get("TEST_DATABASE_URL") is not None, reason="the README's first run is on SQLite")
def test_run_script_sets_up_the_app_and_prints_a_working_admin_password(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ADMIN_USERNAME", "ADMIN_PASSWORD"}}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'first-run.db'}", AUDIT_DATA_DIR=str(tmp_path / "data"),
               PORT=str(port), PYTHONUNBUFFERED="1")
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(ROOT / "scripts" / "run.sh")], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        password, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            match = re.search(r"password: (\S+)", log.read_text())
            if match:
                password = match.group(1)
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)  # noqa: S310
                    break
                except OSError:
                    pass
            time.sleep(0.3)
        assert password, log.read_text()
        assert _login(f"http://127.0.0.1:{port}", "admin", password) == 302
        assert _login(f"http://127.0.0.1:{port}", "admin", "not-the-password") == 401
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_readme_api_examples_run(live_app, tmp_path):
    block = _shell_block_after("### Audit log API")
    assert "tokens create" in block and "/export" in block
    script = (block.replace(DOCUMENTED_BASE, live_app.url)
              .replace(".venv/bin/flask", f"{sys.executable} -m flask"))
    env = {**live_app.env, "PYTHONPATH": str(ROOT)}
    # Each curl prints its body; -f makes a 4xx/5xx fail the script.
    script = "set -euo pipefail\ncd " + str(ROOT) + "\n" + script.replace("curl -s ", "curl -sf ").replace(
        "-o failures.csv", f"-o {tmp_path / 'failures.csv'}")
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    bodies = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert bodies and all(body["success"] for body in bodies)
    assert "items" in bodies[0]["data"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "failures.csv").read_text(encoding="utf-8"))))
    assert all(row["status"] == "FAILURE" for row in rows)


def test_the_docs_paging_and_export_script_runs(live_app, tmp_path):
    token = live_app.flask("tokens", "create", "--username", "admin", "--name", "docs-test").strip().splitlines()[0]
    env = {**os.environ, "AUDIT_PORTAL_URL": live_app.url, "AUDIT_PORTAL_TOKEN": token}
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "fetch_audit_log.py")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    count = int(re.search(r"^(\d+) events$", result.stdout, re.M).group(1))
    assert count > 0
    exported = list(csv.DictReader(io.StringIO((tmp_path / "audit-export.csv").read_text(encoding="utf-8"))))
    # The export runs after the paging; the script's own requests (and the server's background writer)
    # may have added a few events in between, never removed one.
    assert count <= len(exported) <= count + 20
