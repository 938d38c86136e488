"""Small helpers shared by the benchmarks in ``bench/``: a throwaway PostgreSQL database, the ``flask`` CLI,
gunicorn served as in production, /proc readings and a median-with-spread summary.

Same conventions as ``bench/request_overhead.py`` (which predates this module and keeps its own copies):
everything runs from the repository root with the project's virtualenv, servers get their own session so a
Ctrl-C reaches only the benchmark, which then stops them itself.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
USER_AGENT = "audit-portal-bench/1.0"


class BenchError(RuntimeError):
    """The benchmark cannot go on (a server did not start, a command failed, ...)."""


def require_venv_tools(*names: str) -> None:
    for name in names:
        if not (VENV_BIN / name).exists():
            raise SystemExit(f"{VENV_BIN / name} is missing: create the virtualenv first (scripts/run.sh)")


def require_wrk() -> None:
    """wrk (the load generator): installed by scripts/install-bench-tools.sh when missing."""
    if shutil.which("wrk") is None:
        result = subprocess.run([str(ROOT / "scripts" / "install-bench-tools.sh")])
        if result.returncode != 0 or shutil.which("wrk") is None:
            raise SystemExit("wrk is missing and could not be installed: apt-get install wrk")


# -- database ------------------------------------------------------------------------------------


def pg_connect(url: str, autocommit: bool = True):
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = autocommit
    return connection


def admin_sql(server_url: str, sql: str) -> None:
    """Run ``sql`` (a statement that cannot run in a transaction) in the server's ``postgres`` database."""
    connection = pg_connect(f"{server_url}/postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def recreate_database(server_url: str, name: str) -> None:
    drop_database(server_url, name)
    admin_sql(server_url, f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(database_url: str, sql: str, params=()) -> list[tuple]:
    connection = pg_connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


# -- the app: CLI and server ---------------------------------------------------------------------


def app_env(database_url: str, data_dir: Path, secret_key: str, hmac_key: str, **settings: str) -> dict:
    """The environment of a production-like app (APP_ENV=production, keys set, no rate limit) plus ``settings``."""
    env = dict(os.environ)
    for name in ("FLASK_APP", "FLASK_DEBUG"):
        env.pop(name, None)
    env.update(
        FLASK_APP="wsgi", APP_ENV="production", DATABASE_URL=database_url, SECRET_KEY=secret_key,
        AUDIT_HMAC_KEY=hmac_key, RATELIMIT_ENABLED="false", AUDIT_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    return env


def flask_cli(env: dict, *arguments: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess:
    command = [str(VENV_BIN / "flask"), "--app", "wsgi", *arguments]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(command[1:])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Server:
    """gunicorn with the production config (``gunicorn.conf.py``), 2 sync workers, on a loopback port."""

    name: str
    port: int
    env: dict
    log_dir: Path
    workers: int = 2
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def access_log(self) -> Path:
        return self.log_dir / f"{self.name}.access.log"

    @property
    def error_log(self) -> Path:
        return self.log_dir / f"{self.name}.error.log"

    def start(self) -> None:
        command = [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--workers", str(self.workers),
                   "--worker-class", "sync", "--bind", f"127.0.0.1:{self.port}",
                   # several servers (and other projects) must not fight over the default control socket path
                   "--no-control-socket", *self.extra_args, "wsgi:app"]
        with open(self.access_log, "ab") as out, open(self.error_log, "ab") as err:
            # Its own session: a Ctrl-C in the terminal reaches only the benchmark, which stops the server itself.
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=err,
                                            start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn '{self.name}' exited ({self.process.returncode}); "
                                 f"see {self.error_log}:\n{self.error_log.read_text()[-3000:]}")
            try:
                if http_status(self.port, "/healthz") == 200 and len(self.worker_pids()) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"gunicorn '{self.name}' did not answer /healthz within {timeout:.0f} s")

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid) if self.process and self.process.poll() is None else []

    def stop(self, timeout: float = 40.0) -> None:
        """SIGTERM (a graceful stop: workers write their queued audit events), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"  gunicorn '{self.name}' did not stop in {timeout:.0f} s; killing it", file=sys.stderr)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def http_status(port: int, path: str, headers: dict | None = None, timeout: float = 30) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": USER_AGENT, **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# -- /proc ---------------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (index 0 is the state), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, all its threads included (the audit writer thread too)."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else None


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields and int(fields[1]) == parent:
                children.append(int(entry))
    return sorted(children)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set size) of a process in KiB; empty if it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except OSError:
        return {}
    return values


# -- statistics ----------------------------------------------------------------------------------


def summarise(values: list[float]) -> dict:
    """Median with quartiles and range."""
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "q1": quartiles[0], "q3": quartiles[2],
            "min": ordered[0], "max": ordered[-1], "n": len(ordered)}
