#!/usr/bin/env python3
"""Request overhead of auditing: throughput with AUDIT_ENABLED=true against AUDIT_ENABLED=false.

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/request_overhead.py            # full run, about 6-7 minutes
    .venv/bin/python bench/request_overhead.py --quick    # smoke run, about 1 minute

What it does (docs/performance.md explains how to read the result):

1. Creates a throwaway PostgreSQL database (dropped first if it exists), runs ``flask db upgrade``,
   creates an admin and some users with ``flask users create-admin`` / ``users create`` and seeds
   demo events with ``flask demo seed``.
2. Serves the app twice side by side with gunicorn (``--config gunicorn.conf.py``, 2 sync workers,
   loopback, APP_ENV=production, RATELIMIT_ENABLED=false), same database: server "on" with
   AUDIT_ENABLED=true, server "off" with AUDIT_ENABLED=false.
3. Logs in to each server through the HTML form to get an authenticated session cookie.
4. Measures requests/second with ``wrk -t1 -c8 -d<seconds>`` on two scenarios, alternating the two
   servers for ``--pairs`` pairs (the first server of a pair alternates too, on-off then off-on, so a
   drift of the machine's speed during a pair does not always favour the same side):
     GET  /admin/users/               an admin page: a "significant" request that the hooks record
     POST /admin/users/<id>/edit      the HTML edit form (with its CSRF token) setting a user's full name
                                      to a new value each time: one UPDATE row in the change's transaction
                                      plus one REQUEST row from the hooks
   and prints, per scenario, the median of the per-pair on/off ratios with its spread (quartiles and
   min-max) and the absolute requests/second of each server. It also reads, around every run, the CPU
   time of the server's workers and of the PostgreSQL backends serving them (/proc), and prints the
   per-pair ratio of CPU per request: on a machine shared with other work that is the steadier figure.
5. Stops the servers (SIGTERM: queued events are written at worker exit) and checks that no audit
   event was lost: the rows added to ``audit_logs`` must equal what the "on" server's access log says
   it recorded (one REQUEST row per significant request, one LOGIN per successful login, one UPDATE per
   successful edit). The "off" server must add none. ``flask audit verify`` then checks the hash chain.
6. Tears everything down (servers, database, temporary files) even on Ctrl-C or an error.

With ``--alerts`` both servers audit too, and the comparison is the alert evaluator's cost: server "on" runs it
in-app (ALERT_EVAL_IN_APP=true, every built-in rule enabled, as installed), server "off" runs none; the servers
share one database, so the rules are the same and only the evaluation differs. Without ``--alerts`` neither
server evaluates rules.

With ``--streams N`` both servers audit, and the comparison is streaming's cost instead: server "on" delivers
N active stream destinations (NDJSON files, json format) with its in-app dispatcher threads
(STREAM_DISPATCH_IN_APP=true), server "off" has no dispatcher (STREAM_DISPATCH_IN_APP=false); the events of
both servers are accounted for, and the destinations' lag is printed at the end.

The servers inherit this script's environment, so a setting can be varied for an experiment, e.g.
``AUDIT_SEAL_INTERVAL=0 .venv/bin/python bench/request_overhead.py`` measures without the background sealer.

The POST changes the full name to a unique value every time (rather than toggling a status) so that
every successful POST is a real change that must have exactly one UPDATE row: with 8 connections in
flight, toggles could arrive out of order and some would be no-ops, and the expected count would be
unknown.
"""

from __future__ import annotations

import argparse
import http.client
import http.cookies
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - after the path set-up
    BenchError,
    child_pids,
    cpu_seconds,
    drop_database,
    pg_connect,
    query,
    recreate_database,
    require_wrk,
    summarise,
)

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT))

USER_AGENT = "audit-portal-bench/1.0"  # session protection is "strong": wrk must send the login's agent
ADMIN = ("bench_admin", "bench-admin-password-1")
USER_PASSWORD = "bench-user-password-1"
GET_PATH = "/admin/users/"
EDIT_PATH_RE = re.compile(r"^/admin/users/\d+/edit$")
ACCESS_LINE_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

#: Short runs, many pairs: the load of the machine's other tenants comes in bursts of a few seconds, so the
#: two runs of a pair are more likely to see the same conditions when they are short.
FULL = {"pairs": 24, "seconds": 3, "warmup": 2, "users": 8, "events": 5000}
QUICK = {"pairs": 4, "seconds": 2, "warmup": 1, "users": 3, "events": 1000}


# -- command line --------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of audit_portal with auditing on and off (gunicorn + wrk, alternating pairs).",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run of about a minute: defaults become {QUICK}")
    parser.add_argument("--pairs", type=int, help=f"on/off pairs per scenario (default {FULL['pairs']}, "
                                                  f"--quick {QUICK['pairs']})")
    parser.add_argument("--seconds", type=int, help=f"wrk duration of one run (default {FULL['seconds']}, "
                                                    f"--quick {QUICK['seconds']})")
    parser.add_argument("--warmup", type=int, help=f"seconds of unmeasured load per server and scenario first "
                                                   f"(default {FULL['warmup']}, --quick {QUICK['warmup']})")
    parser.add_argument("--users", type=int, help=f"users the POST scenario edits in turn "
                                                  f"(default {FULL['users']}, --quick {QUICK['users']})")
    parser.add_argument("--events", type=int, help=f"demo events seeded before the run "
                                                   f"(default {FULL['events']}, --quick {QUICK['events']})")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c (default: %(default)s)")
    parser.add_argument("--pause", type=float, default=0.6,
                        help="seconds of rest after each wrk run, so that the audit writer's last batch (written "
                             "up to AUDIT_WRITE_DELAY_MS = 250 ms after its first event) counts in that run "
                             "(default: %(default)s)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (no database name) for the throwaway database (default: %(default)s)")
    parser.add_argument("--db-name", default="ap_bench_overhead",
                        help="throwaway database, dropped and recreated (default: %(default)s)")
    parser.add_argument("--port-on", type=int, default=8771,
                        help="port of the server with auditing on (default: %(default)s)")
    parser.add_argument("--port-off", type=int, default=8772,
                        help="port of the server with auditing off (default: %(default)s)")
    parser.add_argument("--only", choices=["get", "post"], help="measure one scenario only")
    parser.add_argument("--streams", type=int, default=0,
                        help="compare N active stream destinations (server 'on') with none (server 'off'), both "
                             "auditing (default: %(default)s: compare auditing on with off)")
    parser.add_argument("--alerts", action="store_true",
                        help="compare the alert evaluator (every built-in rule enabled) on vs off, both servers auditing")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (server logs)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end (to inspect it)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    for name, default in base.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.pairs < 1 or args.seconds < 1 or args.users < 1 or args.events < 1:
        parser.error("--pairs, --seconds, --users and --events must be at least 1")
    if args.port_on == args.port_off:
        parser.error("--port-on and --port-off must differ")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.db_name):
        parser.error("--db-name: lower-case letters, digits and underscores only")
    return args


# -- database ------------------------------------------------------------------------------------


# -- the app: CLI and servers --------------------------------------------------------------------


def app_env(database_url: str, data_dir: Path, audit_enabled: bool, secret_key: str, hmac_key: str,
            **settings: str) -> dict:
    env = dict(os.environ)
    env.update(
        FLASK_APP="wsgi", APP_ENV="production", DATABASE_URL=database_url, SECRET_KEY=secret_key,
        AUDIT_HMAC_KEY=hmac_key, RATELIMIT_ENABLED="false", AUDIT_ENABLED="true" if audit_enabled else "false",
        AUDIT_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **settings,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    return env


def flask_cli(env: dict, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(VENV_BIN / "flask"), "--app", "wsgi", *arguments]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(command[1:])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def verify_chain(env: dict) -> str:
    """``flask audit verify``: seals what is not sealed yet and checks the hash chain; its verdict line."""
    result = flask_cli(env, "audit", "verify", check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("OK", "FAILED"))]
    return lines[-1] if lines else f"flask audit verify exited {result.returncode}: {result.stderr.strip()[-300:]}"


@dataclass
class Server:
    name: str
    port: int
    env: dict
    log_dir: Path
    process: subprocess.Popen | None = None
    cookie: str = ""
    csrf_token: str = ""
    runs: dict = field(default_factory=dict)

    @property
    def access_log(self) -> Path:
        return self.log_dir / f"{self.name}.access.log"

    @property
    def error_log(self) -> Path:
        return self.log_dir / f"{self.name}.error.log"

    def start(self) -> None:
        command = [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--workers", "2",
                   "--worker-class", "sync", "--bind", f"127.0.0.1:{self.port}",
                   # two servers (and other projects) must not fight over the default control socket path
                   "--no-control-socket", "wsgi:app"]
        with open(self.access_log, "wb") as out, open(self.error_log, "wb") as err:
            # Its own session: a Ctrl-C in the terminal reaches only this script, which stops the server itself.
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=err,
                                            start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn '{self.name}' exited ({self.process.returncode}); "
                                 f"see {self.error_log}:\n{self.error_log.read_text()[-3000:]}")
            try:
                status, _, _ = http_request(self.port, "GET", "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"gunicorn '{self.name}' did not answer /healthz within {timeout:.0f} s")

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

    def access_lines(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request in the access log."""
        lines = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            match = ACCESS_LINE_RE.search(line)
            if match:
                path = match["target"].split("?", 1)[0]
                lines.append((match["method"], urllib.parse.unquote(path), int(match["status"])))
        return lines


def http_request(port: int, method: str, path: str, *, body: dict | None = None, cookie: str = ""):
    """One request without following redirects: (status, headers, text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"User-Agent": USER_AGENT}
    if cookie:
        headers["Cookie"] = cookie
    encoded = None
    if body is not None:
        encoded = urllib.parse.urlencode(body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=encoded, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def session_cookie(headers, previous: str) -> str:
    """The ``session=...`` pair from a response's Set-Cookie headers, or ``previous`` if it set none."""
    for value in headers.get_all("Set-Cookie") or []:
        jar = http.cookies.SimpleCookie()
        jar.load(value)
        if "session" in jar:
            return f"session={jar['session'].value}" if jar["session"].value else ""
    return previous


def log_in(server: Server, edit_path: str) -> None:
    """Log in through the HTML form, then load an edit form for a CSRF token of the logged-in session."""
    status, headers, text = http_request(server.port, "GET", "/auth/login")
    cookie = session_cookie(headers, "")
    match = CSRF_RE.search(text)
    if status != 200 or not match or not cookie:
        raise BenchError(f"{server.name}: GET /auth/login answered {status} without a form and a session cookie")
    form = {"csrf_token": match[1], "username": ADMIN[0], "password": ADMIN[1]}
    status, headers, _ = http_request(server.port, "POST", "/auth/login", body=form, cookie=cookie)
    if status != 302:
        raise BenchError(f"{server.name}: login answered {status} (expected a 302 redirect)")
    cookie = session_cookie(headers, cookie)
    # The login starts a fresh session (and CSRF token): fetch a form to get both.
    status, headers, text = http_request(server.port, "GET", edit_path, cookie=cookie)
    match = CSRF_RE.search(text)
    if status != 200 or not match:
        raise BenchError(f"{server.name}: GET {edit_path} after login answered {status} without a CSRF token")
    server.cookie = session_cookie(headers, cookie)
    server.csrf_token = match[1]
    status, _, _ = http_request(server.port, "GET", GET_PATH, cookie=server.cookie)
    if status != 200:
        raise BenchError(f"{server.name}: GET {GET_PATH} with the session cookie answered {status}")


# -- wrk -----------------------------------------------------------------------------------------

LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII text is a valid Lua string literal


def write_get_script(directory: Path, server: Server) -> Path:
    path = directory / f"get_{server.name}.lua"
    path.write_text(
        'wrk.method = "GET"\n'
        f"wrk.headers[\"Cookie\"] = {lua_string(server.cookie)}\n"
        f"wrk.headers[\"User-Agent\"] = {lua_string(USER_AGENT)}\n" + LUA_DONE
    )
    return path


def write_post_script(directory: Path, server: Server, users: list[tuple[int, str, str]]) -> Path:
    """POST the edit form of each user in turn, each time with a full name never used before."""
    rows = []
    for user_id, username, email in users:
        fixed = urllib.parse.urlencode({"csrf_token": server.csrf_token, "username": username, "email": email,
                                        "role": "user", "submit": "Save changes"})
        rows.append(f"  {{path = {lua_string(f'/admin/users/{user_id}/edit')}, body = {lua_string(fixed)}}},")
    path = directory / f"post_{server.name}.lua"
    path.write_text(
        "local users = {\n" + "\n".join(rows) + "\n}\n"
        "local headers = {\n"
        f"  [\"Cookie\"] = {lua_string(server.cookie)},\n"
        f"  [\"User-Agent\"] = {lua_string(USER_AGENT)},\n"
        '  ["Content-Type"] = "application/x-www-form-urlencoded",\n'
        "}\n"
        'local tag = "run"\n'
        "local n = 0\n"
        "init = function(args) tag = args[1] or tag end\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local user = users[(n % #users) + 1]\n"
        '  return wrk.format("POST", user.path, headers, user.body .. "&full_name=bench-" .. tag .. "-" .. n)\n'
        "end\n" + LUA_DONE
    )
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: dict

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(port: int, path: str, script: Path, seconds: int, connections: int, tag: str) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
               f"http://127.0.0.1:{port}{path}", "--", tag]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    data = json.loads(line[len("WRK_JSON "):])
    errors = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    return WrkResult(data["requests"], data["duration_us"] / 1e6, errors)


# -- CPU accounting ------------------------------------------------------------------------------


def local_tcp_ports(pids: list[int]) -> set[int]:
    """Local ports of the TCP sockets the processes ``pids`` hold (their connections to PostgreSQL among them)."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class CpuMeter:
    """CPU seconds spent by a server's gunicorn workers and by the PostgreSQL backends serving them.

    A backend belongs to a server when its client port is one of that server's workers' sockets, so the
    background work of the idle server (its hash-chain sealer) is not counted in the other's runs. The
    machine's other load changes how fast things run, much less how much CPU one request needs: this is
    the steadier measure when the machine is busy (throughput ratio ~= CPU ratio when the CPU is the limit).
    """

    def __init__(self, server_url: str, db_name: str):
        self.db_name = db_name
        self.connection = pg_connect(f"{server_url}/postgres")

    def close(self) -> None:
        self.connection.close()

    def snapshot(self, server: Server) -> dict[str, dict[int, float]]:
        """{"app": {pid: cpu seconds} of the gunicorn workers, "db": the same for their PostgreSQL backends}."""
        workers = child_pids(server.process.pid)
        ports = local_tcp_ports(workers)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pid, client_port FROM pg_stat_activity WHERE datname = %s", (self.db_name,))
            backends = [pid for pid, port in cursor.fetchall() if port in ports]
        groups = {"app": workers, "db": backends}
        return {name: {pid: cpu for pid in pids if (cpu := cpu_seconds(pid)) is not None}
                for name, pids in groups.items()}

    @staticmethod
    def used(before: dict, after: dict) -> dict[str, float]:
        """CPU seconds used between two snapshots per group (a process started in between counts from its start)."""
        return {name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items()) for name in after}


# -- statistics and accounting -------------------------------------------------------------------

#: Events written by background tasks rather than by requests (the hash-chain sealer, the alert evaluator):
#: listed, not compared.
BACKGROUND_KINDS = {"CHAIN_CHECKPOINT", "ALERT_TRIGGERED", "ALERT_RESOLVED"}


def significance_rule(env: dict):
    """The hooks' own ``is_significant``, configured from the settings the "on" server runs with."""
    from flask import Flask

    from audit_portal.audit.write.hooks import AuditMiddleware
    from audit_portal.config import settings_from

    stub = Flask("bench_stub")
    stub.config.update(settings_from("production", env))
    return AuditMiddleware(stub).is_significant


def expected_events(server: Server) -> Counter:
    """What the "on" server must have stored, from its access log."""
    is_significant = significance_rule(server.env)
    expected: Counter = Counter()
    for method, path, status in server.access_lines():
        if is_significant(method, path):
            expected["REQUEST"] += 1
        if method == "POST" and path == "/auth/login" and status == 302:
            expected["LOGIN"] += 1
        if method == "POST" and EDIT_PATH_RE.match(path) and status == 302:
            expected["UPDATE"] += 1
    return expected


def unexpected_statuses(server: Server) -> Counter:
    """Benchmark requests that did not get their normal answer (200 for the page, 302 for the edit)."""
    bad: Counter = Counter()
    for method, path, status in server.access_lines():
        if (method, path) == ("GET", GET_PATH) and status != 200:
            bad[f"GET {GET_PATH} {status}"] += 1
        elif method == "POST" and EDIT_PATH_RE.match(path) and status != 302:
            bad[f"POST /admin/users/<id>/edit {status}"] += 1
    return bad


# -- the benchmark -------------------------------------------------------------------------------


def setup_database(args, database_url: str, env: dict) -> list[tuple[int, str, str]]:
    print(f"* database {args.db_name}: create, migrate, {args.users + 1} users, {args.events:,} demo events")
    recreate_database(args.pg_url, args.db_name)
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "users", "create-admin", "--username", ADMIN[0], "--password", ADMIN[1],
              "--email", f"{ADMIN[0]}@example.com")
    for i in range(args.users):
        flask_cli(env, "users", "create", "--username", f"bench_user_{i:02d}", "--password", USER_PASSWORD,
                  "--email", f"bench_user_{i:02d}@example.com", "--role", "user")
    flask_cli(env, "demo", "seed", "--count", str(args.events), "--yes")
    # Seal the seeded rows now, so that the servers start from the steady state (a chain that is up to date)
    # instead of sealing thousands of rows in the background during the first pairs.
    print(f"  audit chain before the run: {verify_chain(env)}")
    return query(database_url, "SELECT id, username, email FROM users WHERE username LIKE 'bench\\_user\\_%%' "
                               "ORDER BY id")


@dataclass
class Run:
    rps: float
    app_ms_per_request: float  # CPU of the gunicorn workers (request threads and the audit writer thread)
    db_ms_per_request: float  # CPU of the PostgreSQL backends

    @property
    def cpu_ms_per_request(self) -> float:
        return self.app_ms_per_request + self.db_ms_per_request


def measure(args, servers: dict[str, Server], scenarios: dict[str, tuple[str, dict[str, Path]]],
            meter: CpuMeter) -> dict:
    runs: dict[str, dict[str, list[Run]]] = {name: {"on": [], "off": []} for name in scenarios}
    errors: Counter = Counter()
    run_id = secrets.token_hex(3)
    counter = 0
    served = Counter()  # requests per server over the whole measurement

    def one(scenario: str, side: str, seconds: int) -> Run:
        nonlocal counter
        counter += 1
        path, scripts = scenarios[scenario]
        before = meter.snapshot(servers[side])
        result = run_wrk(servers[side].port, path, scripts[side], seconds, args.connections, f"{run_id}{counter}")
        time.sleep(args.pause)  # the writer's last batch is part of this run's cost, not the next one's
        cpu = meter.used(before, meter.snapshot(servers[side]))
        served[side] += result.requests
        for kind, count in result.errors.items():
            errors[f"{side} {scenario} {kind}"] += count
        per_request = {name: 1000 * seconds / result.requests if result.requests else float("nan")
                       for name, seconds in cpu.items()}
        return Run(result.rps, per_request["app"], per_request["db"])

    print(f"* warm-up: {args.warmup} s per server and scenario")
    for scenario in scenarios:
        for side in ("on", "off"):
            one(scenario, side, args.warmup)

    total = args.pairs * len(scenarios) * 2 * (args.seconds + args.pause + 0.1)
    print(f"* measuring: {args.pairs} pairs x {len(scenarios)} scenarios x 2 servers x {args.seconds} s "
          f"(about {total / 60:.1f} min)")
    load_before = os.getloadavg()[0]
    served.clear()
    whole_start = {side: meter.snapshot(server) for side, server in servers.items()}
    for pair in range(args.pairs):
        order = ("on", "off") if pair % 2 == 0 else ("off", "on")
        cells = []
        for scenario in scenarios:
            pair_runs = {side: one(scenario, side, args.seconds) for side in order}
            for side in ("on", "off"):
                runs[scenario][side].append(pair_runs[side])
            on, off = pair_runs["on"], pair_runs["off"]
            cells.append(f"{scenario} req/s on {on.rps:6.1f} off {off.rps:6.1f} = {on.rps / off.rps:5.3f}, "
                         f"CPU ms/req on {on.cpu_ms_per_request:5.2f} off {off.cpu_ms_per_request:5.2f}")
        print(f"  pair {pair + 1:2d}/{args.pairs} ({'-'.join(order)}): " + " | ".join(cells), flush=True)
    # Background work (the sealer, a batch written after a run's pause) can fall outside every run of its own
    # server: measured over the whole measurement instead, it all counts, whenever it ran.
    whole = {}
    for side, server in servers.items():
        used = meter.used(whole_start[side], meter.snapshot(server))
        whole[side] = 1000 * (used["app"] + used["db"]) / served[side] if served[side] else float("nan")
    return {"runs": runs, "errors": errors, "load": (load_before, os.getloadavg()[0]), "whole_cpu_ms": whole}


LABELS = {"get": f"GET {GET_PATH} (admin page)", "post": "POST /admin/users/<id>/edit"}


def report(args, results: dict, accounting: dict) -> dict:
    print()
    print(f"Request overhead of auditing: {args.pairs} pairs, wrk -t1 -c{args.connections} -d{args.seconds}s, "
          f"gunicorn 2 sync workers, PostgreSQL on loopback, {os.cpu_count()} CPUs, load average during the "
          f"run {results['load'][0]:.1f} to {results['load'][1]:.1f} (1 min, at start and end)")
    header = (f"{'scenario':<33} {'ratio median':>12} {'IQR':>13} {'min-max':>13} {'on req/s':>9} "
              f"{'off req/s':>9} | {'CPU ratio':>9} {'IQR':>13} {'ms/req on':>9} {'off':>5}")
    print(header)
    print("-" * len(header))
    summary = {}
    for scenario, sides in results["runs"].items():
        on_rps = [r.rps for r in sides["on"]]
        off_rps = [r.rps for r in sides["off"]]
        on_cpu = [r.cpu_ms_per_request for r in sides["on"]]
        off_cpu = [r.cpu_ms_per_request for r in sides["off"]]
        ratio = summarise([a / b for a, b in zip(on_rps, off_rps, strict=True)])
        cpu_ratio = summarise([b / a for a, b in zip(on_cpu, off_cpu, strict=True)])
        summary[scenario] = {
            "label": LABELS[scenario], "ratio": ratio, "rps_on_median": statistics.median(on_rps),
            "rps_off_median": statistics.median(off_rps), "cpu_ratio": cpu_ratio,
            "cpu_ms_on_median": statistics.median(on_cpu), "cpu_ms_off_median": statistics.median(off_cpu),
            "rps_on": on_rps, "rps_off": off_rps, "cpu_ms_on": on_cpu, "cpu_ms_off": off_cpu,
            "app_ms_on": [r.app_ms_per_request for r in sides["on"]],
            "app_ms_off": [r.app_ms_per_request for r in sides["off"]],
            "db_ms_on": [r.db_ms_per_request for r in sides["on"]],
            "db_ms_off": [r.db_ms_per_request for r in sides["off"]],
            "app_ms_on_median": statistics.median(r.app_ms_per_request for r in sides["on"]),
            "app_ms_off_median": statistics.median(r.app_ms_per_request for r in sides["off"]),
            "db_ms_on_median": statistics.median(r.db_ms_per_request for r in sides["on"]),
            "db_ms_off_median": statistics.median(r.db_ms_per_request for r in sides["off"]),
        }
        item = summary[scenario]
        print(f"{LABELS[scenario]:<33} {ratio['median']:>12.3f} {ratio['q1']:>6.3f}-{ratio['q3']:<6.3f} "
              f"{ratio['min']:>6.3f}-{ratio['max']:<6.3f} {item['rps_on_median']:>9.1f} {item['rps_off_median']:>9.1f}"
              f" | {cpu_ratio['median']:>9.3f} {cpu_ratio['q1']:>6.3f}-{cpu_ratio['q3']:<6.3f} "
              f"{item['cpu_ms_on_median']:>9.2f} {item['cpu_ms_off_median']:>5.2f}")
    if args.streams:
        print(f"on = auditing with {args.streams} active stream destinations (in-app dispatchers); off = auditing, "
              "no dispatcher.")
    if args.alerts:
        print("on = auditing with the alert evaluator (every built-in rule enabled, ALERT_EVAL_INTERVAL "
              f"{os.environ.get('ALERT_EVAL_INTERVAL', '5')} s); off = auditing, no evaluator.")
    print("ratio = on req/s / off req/s of the same pair (target >= 0.90); req/s are medians over the pairs.")
    print("CPU ratio = off / on CPU per request (gunicorn workers + PostgreSQL backends) of the same pair.")
    for scenario, item in summary.items():
        print(f"  {LABELS[scenario]}: CPU ms/request, app on {item['app_ms_on_median']:.2f} off "
              f"{item['app_ms_off_median']:.2f}, PostgreSQL on {item['db_ms_on_median']:.2f} off "
              f"{item['db_ms_off_median']:.2f} (medians)")
    whole = results["whole_cpu_ms"]
    print(f"Whole measurement, both scenarios, background work included: CPU ms/request on {whole['on']:.2f} "
          f"off {whole['off']:.2f}, ratio off/on {whole['off'] / whole['on']:.3f}")
    if results["errors"]:
        print(f"wrk errors: {dict(results['errors'])}")

    expected, stored = accounting["expected"], accounting["stored"]
    compared = sorted((set(expected) | set(stored)) - BACKGROUND_KINDS)
    expected_total = sum(expected[k] for k in compared)
    stored_total = sum(stored[k] for k in compared)
    no_loss = all(expected[k] == stored[k] for k in compared)
    print()
    whose = "both servers" if args.streams or args.alerts else "the 'on' server"
    print(f"Audit events {whose} had to write (from the access logs) vs rows added to audit_logs:")
    for kind in compared:
        print(f"  {kind:<16} expected {expected[kind]:>8,}  stored {stored[kind]:>8,}")
    print(f"  {'total':<16} expected {expected_total:>8,}  stored {stored_total:>8,}  -> "
          f"{'no loss' if no_loss else 'MISMATCH'}")
    for kind in sorted(BACKGROUND_KINDS & set(stored)):
        print(f"  (plus {stored[kind]:,} {kind} rows written by background tasks, not by requests)")
    for name, bad in accounting["unexpected"].items():
        if bad:
            print(f"  WARNING: server '{name}' gave unexpected answers: {dict(bad)}")
    print(f"Audit chain after the run (flask audit verify): {accounting['chain']}")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: getattr(args, k) for k in ("pairs", "seconds", "warmup", "pause", "users", "events",
                                                   "connections")},
        "cpus": os.cpu_count(),
        "load_average_1min": results["load"],
        "scenarios": summary,
        "whole_cpu_ms_per_request": whole,
        "events": {"expected": dict(expected), "stored": dict(stored), "expected_total": expected_total,
                   "stored_total": stored_total, "no_loss": no_loss},
        "wrk_errors": dict(results["errors"]),
        "chain": accounting["chain"],
    }


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    for tool in (VENV_BIN / "flask", VENV_BIN / "gunicorn"):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: create the virtualenv first (scripts/run.sh)")
    require_wrk()
    # A SIGTERM to this script tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)

    database_url = f"{args.pg_url}/{args.db_name}"
    tmp = Path(tempfile.mkdtemp(prefix="ap_bench_overhead_"))
    secret_key, hmac_key = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    no_alerts = {"ALERT_EVAL_IN_APP": "false"}  # the evaluator is measured only with --alerts
    if args.streams:  # both audit; "on" delivers the destinations, "off" runs no dispatcher
        streams = {"AUDIT_STREAM_FILE_DIR": str(tmp / "streams"), **no_alerts}
        servers = {
            "on": Server("on", args.port_on, app_env(database_url, tmp / "data_on", True, secret_key, hmac_key,
                                                     STREAM_DISPATCH_IN_APP="true", **streams), tmp),
            "off": Server("off", args.port_off, app_env(database_url, tmp / "data_off", True, secret_key, hmac_key,
                                                        STREAM_DISPATCH_IN_APP="false", **streams), tmp),
        }
    elif args.alerts:  # both audit; "on" evaluates every built-in rule (each enabled, the default), "off" none
        servers = {
            "on": Server("on", args.port_on, app_env(database_url, tmp / "data_on", True, secret_key, hmac_key,
                                                     ALERT_EVAL_IN_APP="true"), tmp),
            "off": Server("off", args.port_off, app_env(database_url, tmp / "data_off", True, secret_key, hmac_key,
                                                        **no_alerts), tmp),
        }
    else:
        servers = {
            "on": Server("on", args.port_on, app_env(database_url, tmp / "data_on", True, secret_key, hmac_key,
                                                     **no_alerts), tmp),
            "off": Server("off", args.port_off, app_env(database_url, tmp / "data_off", False, secret_key, hmac_key,
                                                        **no_alerts), tmp),
        }
    database_made = False
    started = time.monotonic()
    try:
        database_made = True
        users = setup_database(args, database_url, servers["on"].env)
        if not users:
            raise BenchError("no bench users were created")
        for number in range(args.streams):
            flask_cli(servers["on"].env, "streams", "add", "--name", f"bench-{number}", "--kind", "file", "--path",
                      f"bench-{number}.ndjson", "--format", "json")
        (baseline,) = query(database_url, "SELECT coalesce(max(id), 0) FROM audit_logs")[0]

        print(f"* gunicorn: auditing on at 127.0.0.1:{args.port_on}, off at 127.0.0.1:{args.port_off}")
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
            log_in(server, f"/admin/users/{users[0][0]}/edit")

        scenarios = {}
        if args.only in (None, "get"):
            scenarios["get"] = (GET_PATH, {s: write_get_script(tmp, servers[s]) for s in servers})
        if args.only in (None, "post"):
            scenarios["post"] = ("/", {s: write_post_script(tmp, servers[s], users) for s in servers})
        meter = CpuMeter(args.pg_url, args.db_name)
        try:
            results = measure(args, servers, scenarios, meter)
        finally:
            meter.close()

        print("* stopping the servers (queued audit events are written at worker exit)")
        for server in servers.values():
            server.stop()
        stored = Counter(dict(query(database_url, "SELECT action_type, count(*) FROM audit_logs WHERE id > %s "
                                                  "GROUP BY action_type", (baseline,))))
        expected = expected_events(servers["on"])
        if args.streams or args.alerts:
            expected += expected_events(servers["off"])
        if args.alerts:
            print("* alerts after the run:\n" + flask_cli(servers["on"].env, "alerts", "list", "--state", "all").stdout)
        if args.streams:
            print("* stream destinations after the run:\n" + flask_cli(servers["on"].env, "streams", "list").stdout)
        accounting = {
            "chain": verify_chain(servers["on"].env),
            "expected": expected,
            "stored": stored,
            "unexpected": {name: unexpected_statuses(server) for name, server in servers.items()},
        }
        data = report(args, results, accounting)
        print(f"\n(total time {(time.monotonic() - started) / 60:.1f} min)")
        if args.json:
            args.json.write_text(json.dumps(data, indent=2) + "\n")
            print(f"results written to {args.json}")
        return 0 if data["events"]["no_loss"] and not any(accounting["unexpected"].values()) else 1
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: tearing down", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the teardown even if asked again
        for server in servers.values():
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                print(f"could not stop gunicorn '{server.name}': {exc}", file=sys.stderr)
        if database_made and args.keep_db:
            print(f"database kept: {database_url}")
        elif database_made:
            try:
                drop_database(args.pg_url, args.db_name)
            except Exception as exc:  # noqa: BLE001
                print(f"could not drop database {args.db_name}: {exc}", file=sys.stderr)
        if args.keep_tmp:
            print(f"server logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
