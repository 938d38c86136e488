#!/usr/bin/env python3
"""Does the audit log stay fast as it grows? List latency at a large size against a small one, and a mixed load.

Run by hand (not in CI), from the repository root, with the project's virtualenv. Loading millions of rows
takes a while, so the two databases are prepared once (``--prepare``) and reused (docs/scaling.md):

    .venv/bin/python bench/scale.py --prepare --large-rows 10000000      # create + seed both, then measure
    .venv/bin/python bench/scale.py                                      # measure existing databases
    .venv/bin/python bench/scale.py --drop                               # measure, then drop both databases
    .venv/bin/python bench/scale.py --quick --prepare --large-rows 50000 # smoke run, a few minutes
    .venv/bin/python bench/scale.py --replica --large-rows 1000000       # the same figures, read from a replica

What it does:

0. With ``--replica`` (docs/scaling.md, "Read replicas"): both databases live on a throwaway PostgreSQL primary with a
   streaming replica, made for the run by ``tests/replica_cluster.py`` (as the replica tests make theirs; root
   needed, to run them as the ``postgres`` user) and removed at the end, so ``--prepare`` is implied and
   ``--pg-url``/``--drop`` do not apply. Every server gets ``DATABASE_REPLICA_URL``: its lists, histograms and
   dashboards are read from the replica, which is checked after the run (rows returned by each server for each
   database during the latency runs, from ``pg_stat_database``). ``--read-primary`` makes the comparison: the same
   throwaway servers and settings, without ``DATABASE_REPLICA_URL``. ``--against-primary`` compares the two in one
   run instead: only the large database, served twice, reading the primary ("small" side) and the replica ("large"
   side), alternating; the ratios are then replica / primary (no mixed load).
1. With ``--prepare``: (re)creates ``--small-db`` and ``--large-db`` on ``--pg-url``, runs ``flask db upgrade``,
   makes an admin (``flask users create-admin``) and 20 users, and seeds ``--small-rows`` / ``--large-rows``
   events with ``flask demo seed --count N --yes`` (COPY; from 500,000 rows on it drops and rebuilds the
   secondary indexes, and ends with VACUUM (ANALYZE): since 2026-12-01 the seed's time includes it), timing
   the seed. Without it the databases must exist (made by
   an earlier ``--prepare``: same admin name and password).
2. Starts one gunicorn per database as in production (``--config gunicorn.conf.py``, 2 sync workers,
   APP_ENV=production, SECRET_KEY/AUDIT_HMAC_KEY set, AUDIT_SEAL_INTERVAL=0, RATELIMIT_ENABLED=false), makes
   an API token for the admin (``flask tokens create``) and logs in through the HTML form for a session.
3. Gets, for each database and outside the timing, the cursor of the 1,000th page of 10 events (a 10,000-row
   log has no 1,000th page of 50; the other cases use pages of 50): by walking
   ``next_cursor`` / the viewer's Next link with pages of 500 (API) and 200 (viewer) rows.
4. Latency: for ``--reps`` repetitions, every case is requested once on each database, alternating which
   goes first (A B, B A, ...); one request per fresh connection, as gunicorn's sync workers close them.
   Cases (``bench/_scale_cases.py``), for the JSON list API and for the HTML viewer: no filter; a user; an
   action type + a 7-day range; a search word; the search language (``q``): an IP range, a path prefix, a
   negation and a query of three terms; the 1,000th page by cursor; for the API side also the histogram
   (``/api/v1/audit-logs/histogram``, default buckets, unfiltered and for one action; the viewer draws it above
   every list); for the HTML side also the error dashboard (unfiltered
   and one severity, from the error rollup; the last 24 hours, counted from the events through the partial
   index of ERROR events by time; one user's errors, from the events, for information). Prints
   the median latency of each side and the median of the per-pair ratios large/small with quartiles.
   Target: every ratio <= 2 (the two information-only dashboard cases are not held to it).
5. Mixed load (skipped with ``--mixed-seconds 0``): gunicorn with 4 sync workers on the large database,
   ``wrk`` on loopback for ``--mixed-seconds`` rotating over the viewer (the filter cases of step 4, the error
   dashboard), the list API, HTML logins of ordinary users and status changes through the JSON users API.
   Then SIGTERM to gunicorn (its workers write their queued events) and, after it exits, counts: wrk's
   errors and non-2xx/3xx answers (target 0), and the REQUEST events stored for the run's requests against
   the significant requests in gunicorn's access log, also per path, plus duplicates by request_id (target:
   equal, no duplicates), and the LOGIN events against successful logins.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import secrets
import signal
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402 - after the path set-up
    BenchError,
    Server,
    app_env,
    drop_database,
    flask_cli,
    query,
    recreate_database,
    require_venv_tools,
    require_wrk,
    summarise,
)
from _scale_cases import DASHBOARD_CASES, HISTOGRAM_CASES, INFO_ONLY, filter_cases  # noqa: E402

ADMIN = ("benchadmin", "Bench-Admin-Pass-123!")
USER_PASSWORD = "Bench-User-Pass-123!"
USERS = 20
#: Its own agent, so the run's events can be told from everything else (session protection is "strong":
#: every request of a session must send the agent it logged in with).
USER_AGENT = "audit-portal-bench-scale/1.0"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
NEXT_CURSOR_RE = re.compile(r'[?&;]cursor=([A-Za-z0-9_.\-]+)')
ACCESS_LINE_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')
TARGET_RATIO = 2.0
PAGE = 50
DEPTH_PAGES = 1000
#: The deep-page case pages by 10: a 10,000-row log has no 1,000th page of 50, but it has one of 10.
DEPTH_PAGE = 10
QUICK = {"reps": 5, "mixed_seconds": 10}
FULL = {"reps": 25, "mixed_seconds": 60}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--small-db", default="ap_bench_small")
    parser.add_argument("--large-db", default="ap_bench_scale")
    parser.add_argument("--prepare", action="store_true", help="(re)create and seed both databases first")
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--large-rows", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: defaults become {QUICK}")
    parser.add_argument("--reps", type=int, help=f"repetitions (pairs) per case (default {FULL['reps']})")
    parser.add_argument("--mixed-seconds", type=int, help=f"mixed load duration, 0 skips it "
                                                          f"(default {FULL['mixed_seconds']})")
    parser.add_argument("--mixed-connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=8791, help="first of three loopback ports")
    parser.add_argument("--drop", action="store_true", help="drop both databases at the end")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--replica", action="store_true",
                        help="databases on a throwaway primary with a streaming replica that serves the reads "
                             "(implies --prepare)")
    parser.add_argument("--read-primary", action="store_true",
                        help="with --replica: the same throwaway servers, but no DATABASE_REPLICA_URL (the comparison)")
    parser.add_argument("--against-primary", action="store_true",
                        help="with --replica: the large database only, read from the primary and from the replica "
                             "by two servers, alternating (ratio = replica / primary)")
    args = parser.parse_args(argv)
    args.prepare = args.prepare or args.replica
    if args.against_primary:
        if not args.replica:
            parser.error("--against-primary needs --replica")
        args.mixed_seconds = 0
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in (args.small_db, args.large_db):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            parser.error("database names: lower-case letters, digits and underscores only")
    return args


# -- HTTP ----------------------------------------------------------------------------------------


def http_request(port: int, method: str, path: str, *, headers: dict | None = None, body: dict | str | None = None,
                 timeout: float = 60) -> tuple[int, object, str, float]:
    """One request on a fresh connection: (status, headers, text, seconds until the body was read)."""
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    if isinstance(body, dict):
        body = urllib.parse.urlencode(body)
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        return response.status, response.headers, text, time.perf_counter() - started
    finally:
        connection.close()


def session_cookie(headers, previous: str) -> str:
    import http.cookies

    for value in headers.get_all("Set-Cookie") or []:
        jar = http.cookies.SimpleCookie()
        jar.load(value)
        if "session" in jar:
            return f"session={jar['session'].value}"
    return previous


def login_form(port: int) -> tuple[str, str]:
    """(cookie, csrf token) of an anonymous session showing the login form."""
    status, headers, text, _ = http_request(port, "GET", "/auth/login")
    match = CSRF_RE.search(text)
    cookie = session_cookie(headers, "")
    if status != 200 or not match or not cookie:
        raise BenchError(f"GET /auth/login answered {status} without a form and a session cookie")
    return cookie, match[1]


def log_in(port: int, username: str, password: str) -> str:
    cookie, csrf = login_form(port)
    status, headers, _, _ = http_request(port, "POST", "/auth/login", headers={"Cookie": cookie},
                                         body={"csrf_token": csrf, "username": username, "password": password})
    if status != 302:
        raise BenchError(f"login as {username} answered {status} (expected a 302 redirect)")
    return session_cookie(headers, cookie)


# -- databases -----------------------------------------------------------------------------------


def prepare(args, name: str, rows: int, env: dict) -> float:
    print(f"* {name}: create, migrate, admin + {USERS} users, seed {rows:,} events", flush=True)
    recreate_database(args.pg_url, name)
    flask_cli(env, "db", "upgrade")
    flask_cli(env, "users", "create-admin", "--username", ADMIN[0], "--password", ADMIN[1],
              "--email", f"{ADMIN[0]}@example.com")
    for i in range(1, USERS + 1):
        flask_cli(env, "users", "create", "--username", f"user{i}", "--password", USER_PASSWORD,
                  "--email", f"user{i}@example.com")
    started = time.monotonic()
    flask_cli(env, "demo", "seed", "--count", str(rows), "--yes", timeout=6 * 3600)
    seconds = time.monotonic() - started
    print(f"  seeded {rows:,} events in {seconds:,.0f} s ({rows / seconds:,.0f} rows/s)", flush=True)
    return seconds


def row_count(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM audit_logs")[0][0]


#: The throwaway servers' memory for ``--replica`` (the test fixture's defaults are sized for a few rows).
REPLICA_BENCH_OPTIONS = "-c shared_buffers=512MB -c max_connections=100 -c work_mem=16MB -c hot_standby_feedback=on"


def start_replica_cluster(args):
    """The throwaway primary and replica of ``--replica``; ``args.pg_url`` then names the primary."""
    from tests.replica_cluster import ReplicaCluster

    cluster = ReplicaCluster(options=REPLICA_BENCH_OPTIONS)
    cluster.start()
    args.pg_url = cluster.server_url("primary")
    print(f"* replica: primary {args.pg_url}, replica {cluster.server_url('replica')}", flush=True)
    return cluster


def rows_returned(server_url: str, names: list[str]) -> dict[str, int]:
    """Rows each database of ``server_url`` has returned to queries so far (``pg_stat_database``)."""
    rows = query(f"{server_url}/postgres", "SELECT datname, tup_returned + tup_fetched FROM pg_stat_database "
                                           "WHERE datname = ANY(%s)", (names,))
    return {name: int(count) for name, count in rows}


# -- the latency cases ---------------------------------------------------------------------------


def deep_cursor(port: int, kind: str, auth: dict) -> str:
    """The cursor of page DEPTH_PAGES (limit DEPTH_PAGE): walk big pages, then one page of the remainder."""
    target = (DEPTH_PAGES - 1) * DEPTH_PAGE  # events before the 1,000th page
    big = 500 if kind == "api" else 200
    walked, cursor = 0, None
    while walked < target:
        step = min(big, target - walked)
        params = {"limit": str(step), **({"cursor": cursor} if cursor else {})}
        path = ("/api/v1/audit-logs/?" if kind == "api" else "/admin/audit-logs/?") + urllib.parse.urlencode(params)
        status, _, text, _ = http_request(port, "GET", path, headers=auth)
        if status != 200:
            raise BenchError(f"walking {kind} pages: {path} answered {status}")
        if kind == "api":
            cursor = json.loads(text)["data"]["next_cursor"]
        else:
            match = NEXT_CURSOR_RE.search(text.replace("&amp;", "&"))
            cursor = urllib.parse.unquote(match[1]) if match else None
        if not cursor:
            raise BenchError(f"walking {kind} pages: no next cursor after {walked + step:,} events")
        walked += step
    return cursor


def measure_latency(args, ports: dict[str, int], auth: dict[str, dict], cases: dict[str, dict[str, dict]],
                    cursors: dict[str, dict[str, str]]) -> dict:
    """{kind: {case: {"small": summary, "large": summary, "ratio": summary}}}."""
    names = list(next(iter(cases.values())))
    results = {}
    for kind in ("api", "html"):
        base = "/api/v1/audit-logs/?" if kind == "api" else "/admin/audit-logs/?"
        paths = {side: {name: base + urllib.parse.urlencode({**cases[side][name], "limit": PAGE}) for name in names}
                 for side in ("small", "large")}
        for side in paths:
            paths[side][f"page {DEPTH_PAGES} (by {DEPTH_PAGE}), cursor"] = base + urllib.parse.urlencode(
                {"limit": DEPTH_PAGE, "cursor": cursors[side][kind]})
            if kind == "api":
                for name, params in HISTOGRAM_CASES.items():
                    paths[side][name] = "/api/v1/audit-logs/histogram?" + urllib.parse.urlencode(params)
            if kind == "html":
                day_ago = (datetime.now(UTC) - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M")
                for name, params in DASHBOARD_CASES.items():
                    params = {k: day_ago if v == "24h" else v for k, v in params.items()}
                    paths[side][name] = "/admin/audit-logs/errors?" + urllib.parse.urlencode(params)
        for side in paths:  # warm-up, unmeasured, and a check that every case answers 200
            for name, path in paths[side].items():
                status, _, _, _ = http_request(ports[side], "GET", path, headers=auth[side][kind])
                if status != 200:
                    raise BenchError(f"{side} {kind} {name}: {path} answered {status}")
        timings = {name: {"small": [], "large": []} for name in paths["small"]}
        for rep in range(args.reps):
            order = ("small", "large") if rep % 2 == 0 else ("large", "small")
            for name in timings:
                for side in order:
                    status, _, _, seconds = http_request(ports[side], "GET", paths[side][name],
                                                         headers=auth[side][kind])
                    if status != 200:
                        raise BenchError(f"{side} {kind} {name} answered {status}")
                    timings[name][side].append(seconds * 1000)
        results[kind] = {
            name: {"small_ms": summarise(t["small"]), "large_ms": summarise(t["large"]),
                   "ratio": summarise([b / a for a, b in zip(t["small"], t["large"], strict=True)])}
            for name, t in timings.items()
        }
        print(f"  {kind}: done", flush=True)
    return results


# -- the mixed load ------------------------------------------------------------------------------


def lua_string(value: str) -> str:
    return json.dumps(value)


def write_mixed_script(directory: Path, cookie: str, token: str, login: tuple[str, str],
                       login_users: list[str], status_users: list[int], cases: dict[str, dict]) -> Path:
    """One request after another from a rotation: 5 viewer pages, 3 API lists, 1 login, 1 status change."""
    browse = ["/admin/audit-logs/?" + urllib.parse.urlencode({**filters, "limit": PAGE}) for filters in cases.values()]
    browse.append("/admin/audit-logs/errors")
    api = ["/api/v1/audit-logs/?" + urllib.parse.urlencode({**filters, "limit": PAGE}) for filters in cases.values()]
    login_cookie, csrf = login
    lines = [
        f"local browse = {{{', '.join(lua_string(p) for p in browse)}}}",
        f"local api = {{{', '.join(lua_string(p) for p in api)}}}",
        f"local login_users = {{{', '.join(lua_string(u) for u in login_users)}}}",
        f"local status_users = {{{', '.join(str(u) for u in status_users)}}}",
        f"local session = {{[\"Cookie\"] = {lua_string(cookie)}, [\"User-Agent\"] = {lua_string(USER_AGENT)}}}",
        f"local bearer = {{[\"Authorization\"] = {lua_string('Bearer ' + token)}, "
        f"[\"User-Agent\"] = {lua_string(USER_AGENT)}, [\"Content-Type\"] = \"application/json\"}}",
        f"local anon = {{[\"Cookie\"] = {lua_string(login_cookie)}, [\"User-Agent\"] = {lua_string(USER_AGENT)}, "
        "[\"Content-Type\"] = \"application/x-www-form-urlencoded\"}",
        f"local csrf = {lua_string(urllib.parse.quote(csrf, safe=''))}",
        f"local password = {lua_string(urllib.parse.quote(USER_PASSWORD, safe=''))}",
        "local n, logins, changes = 0, 0, 0",
        "local statuses = {'suspended', 'active'}",
        "request = function()",
        "  n = n + 1",
        "  local slot = n % 10",
        "  if slot < 5 then",
        "    return wrk.format('GET', browse[(n % #browse) + 1], session)",
        "  elseif slot < 8 then",
        "    return wrk.format('GET', api[(n % #api) + 1], bearer)",
        "  elseif slot == 8 then",
        "    logins = logins + 1",
        "    local user = login_users[(logins % #login_users) + 1]",
        "    return wrk.format('POST', '/auth/login', anon, 'csrf_token=' .. csrf .. '&username=' .. user"
        " .. '&password=' .. password)",
        "  else",
        "    changes = changes + 1",
        "    local user = status_users[(changes % #status_users) + 1]",
        "    local status = statuses[(math.floor(changes / #status_users) % 2) + 1]",
        "    return wrk.format('POST', '/api/v1/users/' .. user .. '/status', bearer,"
        " '{\"status\": \"' .. status .. '\"}')",
        "  end",
        "end",
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        "  io.write(string.format('WRK_JSON {\"requests\": %d, \"duration_us\": %d, \"connect\": %d, \"read\": %d, '",
        "    .. '\"write\": %d, \"status\": %d, \"timeout\": %d, \"p50_us\": %d, \"p99_us\": %d}\\n',",
        "    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,",
        "    latency:percentile(50), latency:percentile(99)))",
        "end",
    ]
    path = directory / "mixed.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def access_lines(server: Server) -> list[tuple[str, str, int]]:
    lines = []
    for line in server.access_log.read_text(errors="replace").splitlines():
        match = ACCESS_LINE_RE.search(line)
        if match and USER_AGENT in line:
            lines.append((match["method"], urllib.parse.unquote(match["target"].split("?", 1)[0]),
                          int(match["status"])))
    return lines


def significance_rule(env: dict):
    """The hooks' own ``is_significant``, configured from the server's settings."""
    from flask import Flask

    from audit_portal.audit.write.hooks import AuditMiddleware
    from audit_portal.config import settings_from

    stub = Flask("bench_stub")
    stub.config.update(settings_from("production", env))
    return AuditMiddleware(stub).is_significant


def _path_key(path: str) -> str:
    return re.sub(r"/\d+(/|$)", r"/<id>\1", path)


def mixed_load(args, tmp: Path, env: dict, database_url: str, cases: dict[str, dict]) -> dict:
    import subprocess

    server = Server("mixed", args.port + 2, env, tmp, workers=4)
    server.start()
    try:
        server.wait_ready()
        token = flask_cli(env, "tokens", "create", "--username", ADMIN[0], "--name", "bench mixed").stdout.split()[0]
        cookie = log_in(server.port, *ADMIN)
        login = login_form(server.port)
        ids = dict(query(database_url, "SELECT username, id FROM users WHERE username LIKE 'user%%'"))
        login_users = [f"user{i}" for i in range(1, USERS // 2 + 1)]
        status_users = [ids[f"user{i}"] for i in range(USERS // 2 + 1, USERS + 1)]
        query(database_url, "UPDATE users SET status = 'active' WHERE id = ANY(%s) RETURNING id", (status_users,))
        script = write_mixed_script(tmp, cookie, token, login, login_users, status_users, cases)
        time.sleep(2)  # the setup requests above are behind us: events from now on belong to the run
        first_id, started = query(database_url, "SELECT coalesce(max(id), 0), now() FROM audit_logs")[0]
        before = len(access_lines(server))
        print(f"* mixed load: wrk -t1 -c{args.mixed_connections} -d{args.mixed_seconds}s, gunicorn 4 sync workers",
              flush=True)
        result = subprocess.run(["wrk", "-t1", f"-c{args.mixed_connections}", f"-d{args.mixed_seconds}s",
                                 "--timeout", "30s", "-s", str(script), f"http://127.0.0.1:{server.port}/"],
                                capture_output=True, text=True, timeout=args.mixed_seconds + 120)
        line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
        if result.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        wrk = json.loads(line[len("WRK_JSON "):])
    finally:
        stopped = time.monotonic()
        server.stop(timeout=120)  # SIGTERM: the workers write their queued events before they exit
        drain_seconds = time.monotonic() - stopped
    lines = access_lines(server)[before:]
    is_significant = significance_rule(env)
    expected = Counter(f"{m} {_path_key(p)}" for m, p, _ in lines if is_significant(m, p))
    stored_rows = query(database_url,
                        "SELECT http_method, path, count(*), count(DISTINCT request_id) FROM audit_logs "
                        "WHERE id > %s AND timestamp >= %s AND action_type = 'REQUEST' AND user_agent = %s GROUP BY 1, 2",
                        (first_id, started, USER_AGENT))
    stored, distinct = Counter(), 0
    for method, path, count, unique in stored_rows:
        stored[f"{method} {_path_key(path.split('?', 1)[0])}"] += count
        distinct += unique
    by_action = dict(query(database_url, "SELECT action_type, count(*) FROM audit_logs WHERE id > %s "
                                         "AND timestamp >= %s AND user_agent = %s GROUP BY 1 ORDER BY 1",
                                         (first_id, started, USER_AGENT)))
    statuses = Counter(f"{m} {_path_key(p)} {s}" for m, p, s in lines)
    bad = {k: v for k, v in statuses.items() if not (200 <= int(k.rsplit(' ', 1)[1]) < 400)}
    logins = sum(1 for m, p, s in lines if m == "POST" and p == "/auth/login" and s == 302)
    status_changes = sum(1 for m, p, s in lines if m == "POST" and p.endswith("/status") and s == 200)
    return {
        "seconds": wrk["duration_us"] / 1e6, "requests": wrk["requests"], "rps": wrk["requests"] / (wrk["duration_us"] / 1e6),
        "p50_ms": wrk["p50_us"] / 1000, "p99_ms": wrk["p99_us"] / 1000,
        "wrk_errors": {k: wrk[k] for k in ("connect", "read", "write", "status", "timeout")},
        "bad_statuses": bad, "answers": dict(statuses), "access_log_requests": len(lines),
        "expected_request_events": sum(expected.values()), "stored_request_events": sum(stored.values()),
        "distinct_request_ids": distinct,
        "mismatch_by_path": {k: (expected[k], stored[k]) for k in expected | stored if expected[k] != stored[k]},
        "successful_logins": logins, "stored_login_events": by_action.get("LOGIN", 0),
        "status_change_requests_ok": status_changes, "stored_status_change_events": by_action.get("STATUS_CHANGE", 0),
        "stored_by_action": by_action, "drain_seconds": drain_seconds,
    }


# -- report --------------------------------------------------------------------------------------


def report(latency: dict, sizes: dict, mixed: dict | None, title: str | None = None) -> bool:
    ok = True
    title = title or f"{sizes['large']:,} rows / {sizes['small']:,} rows"
    print(f"\nList latency, {title} "
          f"(median ms; ratio = median of per-pair ratios, [q1-q3]); target ratio <= {TARGET_RATIO}")
    for kind, cases in latency.items():
        print(f"\n  {'API' if kind == 'api' else 'HTML viewer'}")
        print(f"  {'case':<28}{'small ms':>10}{'large ms':>10}{'ratio':>8}  {'q1-q3':<13} ok")
        for name, r in cases.items():
            met = r["ratio"]["median"] <= TARGET_RATIO
            ok &= met or name in INFO_ONLY
            print(f"  {name:<28}{r['small_ms']['median']:>10.1f}{r['large_ms']['median']:>10.1f}"
                  f"{r['ratio']['median']:>8.2f}  {r['ratio']['q1']:.2f}-{r['ratio']['q3']:.2f}"
                  f"{'':<4} {'-' if name in INFO_ONLY else 'yes' if met else 'NO'}")
    if mixed:
        errors = sum(mixed["wrk_errors"].values()) + sum(mixed["bad_statuses"].values())
        equal = (mixed["expected_request_events"] == mixed["stored_request_events"] == mixed["distinct_request_ids"]
                 and mixed["successful_logins"] == mixed["stored_login_events"])
        ok &= errors == 0 and equal
        print(f"\nMixed load on {sizes['large']:,} rows: {mixed['requests']:,} requests in {mixed['seconds']:.0f} s "
              f"({mixed['rps']:.0f}/s, p50 {mixed['p50_ms']:.0f} ms, p99 {mixed['p99_ms']:.0f} ms)")
        print(f"  errors: {errors} (wrk {mixed['wrk_errors']}, non-2xx/3xx {mixed['bad_statuses']})")
        mismatches = mixed["mismatch_by_path"]
        print(f"  REQUEST events: expected {mixed['expected_request_events']:,}, stored "
              f"{mixed['stored_request_events']:,}, distinct request ids {mixed['distinct_request_ids']:,}"
              + (f"; (expected, stored) where they differ: {mismatches}" if mismatches else ""))
        print(f"  LOGIN events: {mixed['stored_login_events']:,} for {mixed['successful_logins']:,} successful logins; "
              f"STATUS_CHANGE events: {mixed['stored_status_change_events']:,} for "
              f"{mixed['status_change_requests_ok']:,} accepted status requests (a request that sets the status "
              f"the user already has records none)")
        print(f"  answers: {mixed['answers']}; SIGTERM drain took {mixed['drain_seconds']:.1f} s")
    print("\nAll targets met." if ok else "\nSome targets were NOT met (see above).")
    return ok


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    require_venv_tools("flask", "gunicorn")
    if args.mixed_seconds:
        require_wrk()
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="ap_bench_scale_"))
    secret, hmac_key = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    urls = {"small": f"{args.pg_url}/{args.small_db}", "large": f"{args.pg_url}/{args.large_db}"}
    envs = {side: app_env(urls[side], tmp / f"data_{side}", secret, hmac_key, AUDIT_SEAL_INTERVAL="0",
                          WEB_CONCURRENCY="2") for side in urls}
    servers: dict[str, Server] = {}
    results: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
    cluster = start_replica_cluster(args) if args.replica else None
    databases = {"small": (args.small_db, args.small_rows), "large": (args.large_db, args.large_rows)}
    if cluster is not None:
        if args.against_primary:  # one database, served reading the primary ("small") and the replica ("large")
            databases = {"small": databases["large"], "large": databases["large"]}
        urls = {side: f"{args.pg_url}/{name}" for side, (name, _) in databases.items()}
        for side, (name, _) in databases.items():
            on_primary = args.read_primary or (args.against_primary and side == "small")
            replica_url = "" if on_primary else f"{cluster.server_url('replica')}/{name}"
            envs[side] = app_env(urls[side], tmp / f"data_{side}", secret, hmac_key, AUDIT_SEAL_INTERVAL="0",
                                 WEB_CONCURRENCY="2", DATABASE_REPLICA_URL=replica_url)
    try:
        if args.prepare:
            sides = ["large"] if args.against_primary else ["small", "large"]
            results["seed_seconds"] = {side: prepare(args, *databases[side], envs[side]) for side in sides}
        sizes = {side: row_count(url) for side, url in urls.items()}
        results["rows"] = sizes
        if cluster is not None:
            cluster.wait_replayed(timeout=3600)  # the seed's WAL: until then the replica would be skipped
        print(f"* rows: small {sizes['small']:,}, large {sizes['large']:,}", flush=True)
        for i, side in enumerate(("small", "large")):
            servers[side] = Server(side, args.port + i, envs[side], tmp)
            servers[side].start()
        auth, cursors, cases = {}, {}, {}
        for side, server in servers.items():
            server.wait_ready()
            token = flask_cli(envs[side], "tokens", "create", "--username", ADMIN[0],
                              "--name", "bench scale").stdout.split()[0]
            auth[side] = {"api": {"Authorization": f"Bearer {token}"},
                          "html": {"Cookie": log_in(server.port, *ADMIN)}}
            print(f"* {side}: walking to page {DEPTH_PAGES} (limit {DEPTH_PAGE}) by cursor", flush=True)
            cursors[side] = {kind: deep_cursor(server.port, kind, auth[side][kind]) for kind in ("api", "html")}
            cases[side] = filter_cases(urls[side])
        if cluster is not None:
            names = [args.small_db, args.large_db]
            returned_before = {w: rows_returned(cluster.server_url(w), names) for w in ("primary", "replica")}
        print(f"* latency: {args.reps} pairs per case", flush=True)
        results["latency"] = measure_latency(args, {s: servers[s].port for s in servers}, auth, cases, cursors)
        for server in servers.values():
            server.stop()
        if cluster is not None:
            returned = {w: {name: count - returned_before[w].get(name, 0)
                            for name, count in rows_returned(cluster.server_url(w), names).items()}
                        for w in ("primary", "replica")}
            results["rows_returned"] = returned
            print(f"* rows returned during the latency runs: replica {returned['replica']}, "
                  f"primary {returned['primary']}", flush=True)
        mixed = None
        if args.mixed_seconds > 0:
            mixed = mixed_load(args, tmp, {**envs["large"], "WEB_CONCURRENCY": "4"}, urls["large"], cases["large"])
            results["mixed"] = mixed
        title = f"{sizes['large']:,} rows, replica / primary" if args.against_primary else None
        ok = report(results["latency"], sizes, mixed, title)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for server in servers.values():
            server.stop()
        if cluster is not None:
            cluster.stop()
        elif args.drop:
            for name in (args.small_db, args.large_db):
                drop_database(args.pg_url, name)


if __name__ == "__main__":
    sys.exit(main())
