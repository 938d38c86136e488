#!/usr/bin/env python3
"""Retention on a partitioned audit log: the oldest month removed by dropping its partition against the same month
removed by batched deletes, side by side on two copies of one database.

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/retention.py                      # 1,330,000 events, 4 months back (~320,000 a month)
    .venv/bin/python bench/retention.py --rows 10000000 --months 30   # the issue's 10,000,000 (an hour to seed)
    .venv/bin/python bench/retention.py --quick              # 200,000 events: a smoke run of a few minutes

What it does (docs/performance.md, "Retention", shows a run):

1. Creates a throwaway PostgreSQL database (dropped first if it exists), runs ``flask db upgrade`` (monthly
   partitions), makes an admin and an API token, seeds ``--rows`` events spread evenly from the first day of the
   month ``--months`` months back until now with ``flask demo seed`` (so the oldest month is whole, give or take
   the hours of the first day), and seals them all with ``flask audit verify``.
2. For each way ("partition", then "batches"): copies that database (``CREATE DATABASE ... TEMPLATE``, so both
   start from the same bytes), starts gunicorn on the copy as in production (2 sync workers, no background
   sealing), and keeps two probes busy against it from threads, each one request at a time:
     read   GET /api/v1/audit-logs/?limit=20 with the token (a list of the newest events);
     write  POST /auth/login with a wrong password (a LOGIN_FAILED event inserted in the request's transaction:
            the insert that a detach's lock on audit_logs would hold up).
   After ``--settle`` seconds of baseline it runs the purge of every event older than the start of the oldest
   whole month in this process (``plan_purge`` + ``execute_purge``, as ``flask audit purge`` does): "partition"
   as shipped (the month's partition is detached and dropped), "batches" with partition drops turned off, so
   the same events go in DELETE batches of PURGE_BATCH as on an unpartitioned table. Then ``--settle`` seconds
   more.
3. Prints, per way: the purge's wall time, the WAL it wrote (``pg_current_wal_lsn`` before and after; the
   cluster's whole WAL, so other databases' writes in that window count too), the size of audit_logs (its
   partitions' tables and indexes) and audit_chain afterwards (before any VACUUM), and each probe's latency
   (median, 95th percentile, max) before, during and after the purge, with the count of failed requests.
4. Checks that ``flask audit verify`` passes on both copies afterwards, and tears everything down (servers,
   databases, temporary files) even on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402 - after the path set-up
    USER_AGENT,
    BenchError,
    Server,
    admin_sql,
    app_env,
    drop_database,
    flask_cli,
    pg_connect,
    query,
    recreate_database,
    require_venv_tools,
)

ADMIN = ("bench-admin", "Retention-bench-pw-7431")
SOURCE_DB = "ap_bench_retention"
WAYS = ("partition", "batches")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rows", type=int, default=1_330_000)
    parser.add_argument("--months", type=int, default=4,
                        help="the events start on the first day of the month this many months back")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of probing before and after the purge")
    parser.add_argument("--port", type=int, default=8795)
    parser.add_argument("--quick", action="store_true", help="200,000 rows over 2 months, 4 s settle")
    parser.add_argument("--keep", action="store_true", help="keep the seeded source database for another run")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a source database kept by --keep (migrated to the latest revision first)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.months, args.settle = 200_000, 2, 4.0
    return args


# -- probes --------------------------------------------------------------------------------------------


@dataclass
class Probe:
    """One request at a time, in a loop, recording (start time, seconds, ok) until stopped."""

    name: str
    port: int
    method: str
    path: str
    headers: dict
    body: str | None = None
    expect: tuple[int, ...] = (200,)
    samples: list[tuple[float, float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            ok = False
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                connection.request(self.method, self.path, body=self.body,
                                   headers={"User-Agent": USER_AGENT, **self.headers})
                response = connection.getresponse()
                response.read()
                ok = response.status in self.expect
            except OSError:
                pass
            finally:
                connection.close()
            self.samples.append((started, time.monotonic() - started, ok))
            if not ok:
                time.sleep(0.05)

    def window(self, start: float, end: float) -> list[tuple[float, bool]]:
        return [(seconds, ok) for begun, seconds, ok in self.samples if start <= begun < end]


def latency_summary(samples: list[tuple[float, bool]]) -> str:
    if not samples:
        return "no requests"
    ms = sorted(seconds * 1000 for seconds, _ in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    failed = sum(1 for _, ok in samples if not ok)
    return (f"n={len(ms):4d}  median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  max {ms[-1]:8.1f} ms"
            + (f"  FAILED {failed}" if failed else ""))


def login_probe(port: int) -> Probe:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/auth/login", headers={"User-Agent": USER_AGENT})
    response = connection.getresponse()
    page = response.read().decode()
    cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
    connection.close()
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if not match:
        raise BenchError("no CSRF token on /auth/login")
    body = urllib.parse.urlencode({"csrf_token": match[1], "username": "nobody-here", "password": "wrong-password"})
    return Probe("write: POST /auth/login (failed)", port, "POST", "/auth/login",
                 {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}, body, expect=(200, 401))


# -- the database --------------------------------------------------------------------------------------


def month_start(moment: datetime, back: int) -> datetime:
    year, month = moment.year, moment.month - back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=UTC)


def sizes(database_url: str) -> dict[str, int]:
    (table, indexes), = query(database_url, (
        "SELECT coalesce(sum(pg_table_size(relid)), 0), coalesce(sum(pg_indexes_size(relid)), 0) "
        "FROM pg_partition_tree('audit_logs') WHERE isleaf"))
    (chain,), = query(database_url, "SELECT pg_total_relation_size('audit_chain')")
    (rows,), = query(database_url, "SELECT count(*) FROM audit_logs")
    (parts,), = query(database_url, "SELECT count(*) FROM pg_partition_tree('audit_logs') WHERE isleaf")
    return {"table": int(table), "indexes": int(indexes), "chain": int(chain), "rows": rows, "partitions": parts}


def wal_lsn(server_url: str) -> str:
    return query(f"{server_url}/postgres", "SELECT pg_current_wal_lsn()::text")[0][0]


def wal_bytes(server_url: str, start: str, end: str) -> int:
    return int(query(f"{server_url}/postgres", "SELECT pg_wal_lsn_diff(%s, %s)", (end, start))[0][0])


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def prepare_source(args, env: dict, now: datetime) -> tuple[str, datetime]:
    """Seed the source database; return the API token and the cutoff: the end of the oldest month, which the events
    fill from its first day (give or take the hours of the day the seed starts at)."""
    oldest = month_start(now, args.months)
    days = (now - oldest).days
    if not args.reuse:
        print(f"* {SOURCE_DB}: create, migrate, seed {args.rows:,} events over {days} days, seal", flush=True)
        recreate_database(args.pg_url, SOURCE_DB)
        flask_cli(env, "db", "upgrade")
        started = time.monotonic()
        flask_cli(env, "demo", "seed", "--count", str(args.rows), "--days", str(days), "--yes", timeout=6 * 3600)
        print(f"  seeded in {time.monotonic() - started:,.0f} s", flush=True)
        # After the seed: the purge cuts a prefix of the chain, which the admin's creation (an event of today)
        # would otherwise start.
        flask_cli(env, "users", "create-admin", "--username", ADMIN[0], "--password", ADMIN[1],
                  "--email", "bench-admin@example.com")
        started = time.monotonic()
        flask_cli(env, "audit", "verify", timeout=6 * 3600)
        print(f"  sealed and verified in {time.monotonic() - started:,.0f} s", flush=True)
    else:
        flask_cli(env, "db", "upgrade")  # a database kept by an earlier run gets the migrations added since
    # What autovacuum would long have done to links months old (the seed vacuums audit_logs itself): the plan reads
    # a month's links from their index alone where the visibility map says the pages are all visible. Said here
    # because the clusters of the machines this was measured on run with autovacuum off.
    vacuum = pg_connect(f"{args.pg_url}/{SOURCE_DB}")
    try:
        with vacuum.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) audit_chain")
    finally:
        vacuum.close()
    token = flask_cli(env, "tokens", "create", "--username", ADMIN[0], "--name", f"bench {secrets.token_hex(2)}"
                      ).stdout.split()[0]
    return token, month_start(now, args.months - 1)


def purge_in_process(database_url: str, env: dict, way: str, cutoff: datetime) -> dict:
    """Run the purge of everything before ``cutoff`` here; return its timings, what it deleted and dropped."""
    os.environ.update(env)
    os.environ["DATABASE_URL"] = database_url
    from audit_portal import create_app
    from audit_portal.audit.integrity import purge, purge_plan

    app = create_app()
    original = purge_plan.droppable
    if way == "batches":
        purge_plan.droppable = lambda conn, plan: []
    try:
        with app.app_context():
            days = (datetime.now(UTC) - cutoff).total_seconds() / 86400
            started = time.monotonic()
            plan = purge.plan_purge(days)
            planned = time.monotonic()
            deleted = purge.execute_purge(plan)
            ended = time.monotonic()
            return {"seconds": ended - started, "plan_seconds": planned - started, "deleted": deleted,
                    "drops": [(d.name, d.count, d.locked_seconds, d.drop_seconds)
                              for d in plan.drops]}
    finally:
        purge_plan.droppable = original


def run_way(args, way: str, env: dict, token: str, cutoff: datetime, tmp: Path) -> dict:
    name = f"{SOURCE_DB}_{way}"
    database_url = f"{args.pg_url}/{name}"
    drop_database(args.pg_url, name)
    admin_sql(args.pg_url, f'CREATE DATABASE "{name}" TEMPLATE "{SOURCE_DB}"')
    # A data folder of its own: the chain checkpoints written while this copy is served belong to this copy.
    data_dir = tmp / f"data-{way}"
    if (tmp / "data").exists() and not data_dir.exists():
        shutil.copytree(tmp / "data", data_dir)
    data_dir.mkdir(exist_ok=True)
    way_env = {**env, "DATABASE_URL": database_url, "AUDIT_DATA_DIR": str(data_dir)}
    before = sizes(database_url)
    server = Server(way, args.port, way_env, tmp)
    server.start()
    probes: list[Probe] = []
    try:
        server.wait_ready()
        probes = [Probe("read:  GET /api/v1/audit-logs/", args.port, "GET", "/api/v1/audit-logs/?limit=20",
                        {"Authorization": f"Bearer {token}"}),
                  login_probe(args.port)]
        threads = [threading.Thread(target=probe.run, daemon=True) for probe in probes]
        for thread in threads:
            thread.start()
        time.sleep(args.settle)
        lsn = wal_lsn(args.pg_url)
        began = time.monotonic()
        purged = purge_in_process(database_url, way_env, way, cutoff)
        ended = time.monotonic()
        written = wal_bytes(args.pg_url, lsn, wal_lsn(args.pg_url))
        time.sleep(args.settle)
        for probe in probes:
            probe.stop.set()
        for thread in threads:
            thread.join(timeout=70)
    finally:
        for probe in probes:
            probe.stop.set()
        server.stop()
    after = sizes(database_url)
    verified = flask_cli(way_env, "audit", "verify", check=False)
    return {"way": way, **purged, "wal": written, "before": before, "after": after,
            "verify": (verified.returncode, verified.stdout.strip() if verified.returncode == 0
                       else (verified.stdout + verified.stderr).strip()[-600:]),
            "latency": {probe.name: {"before": probe.window(began - args.settle, began),
                                     "during": probe.window(began, ended),
                                     "after": probe.window(ended, ended + args.settle)} for probe in probes}}


def report(results: list[dict]) -> None:
    print()
    for result in results:
        before, after = result["before"], result["after"]
        print(f"== {result['way']}: {result['deleted']:,} events purged in {result['seconds']:.2f} s "
              f"(planning {result['plan_seconds']:.2f} s; {len(result['drops'])} partition(s) dropped whole)")
        for name, count, locked, dropped in result["drops"]:
            print(f"   {name}: {count:,} events (their chain links stay); detach + rollup recount "
                  f"holding audit_logs' lock {locked * 1000:.0f} ms; the detached table dropped in "
                  f"{dropped * 1000:.0f} ms")
        print(f"   WAL written: {mib(result['wal'])}")
        print(f"   audit_logs: {before['rows']:,} -> {after['rows']:,} rows, {before['partitions']} -> "
              f"{after['partitions']} partitions; table {mib(before['table'])} -> {mib(after['table'])}, "
              f"indexes {mib(before['indexes'])} -> {mib(after['indexes'])}; "
              f"audit_chain {mib(before['chain'])} -> {mib(after['chain'])}")
        code, tail = result["verify"]
        print(f"   flask audit verify afterwards: exit {code}: "
              + (tail.splitlines()[-1] if code == 0 and tail else tail.replace("\n", "\n     ")))
        for probe, windows in result["latency"].items():
            print(f"   {probe}")
            for label in ("before", "during", "after"):
                print(f"     {label:6s} {latency_summary(windows[label])}")
    if len(results) == 2:
        part, batch = results
        print(f"\npartition drop / batched deletes: time {part['seconds'] / batch['seconds']:.3f}, "
              f"WAL {part['wal'] / max(batch['wal'], 1):.4f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    require_venv_tools("flask", "gunicorn")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    tmp = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    # Fixed keys: a source database kept by --keep is sealed with them, and a throwaway database guards nothing.
    env = app_env(f"{args.pg_url}/{SOURCE_DB}", tmp / "data", "bench-retention-secret-key-" + "x" * 40,
                  "bench-retention-hmac-key-" + "y" * 40, AUDIT_SEAL_INTERVAL="0", AUDIT_WRITE_DELAY_MS="0")
    now = datetime.now(UTC)
    results = []
    try:
        token, cutoff = prepare_source(args, env, now)
        print(f"* cutoff {cutoff:%Y-%m-%d} (everything before the oldest whole month goes)", flush=True)
        for way in WAYS:
            print(f"* {way}: copy the database, serve it, probe, purge", flush=True)
            results.append(run_way(args, way, env, token, cutoff, tmp))
        report(results)
        return 0 if all(result["verify"][0] == 0 for result in results) else 1
    finally:
        for way in WAYS:
            drop_database(args.pg_url, f"{SOURCE_DB}_{way}")
        if not args.keep:
            drop_database(args.pg_url, SOURCE_DB)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
