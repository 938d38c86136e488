#!/usr/bin/env python3
"""What an audited change costs, with the domain event through the outbox or straight into ``audit_logs``.

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/outbox.py                 # 12 rounds of 400 requests per side: about 3 minutes
    .venv/bin/python bench/outbox.py --rounds 4      # quicker, rougher

In one process, three copies of the app share one throwaway PostgreSQL database (``ap_bench_outbox``: migrations, an
admin, 4 users), each logged in as the admin through the login form with Flask's test client:

- ``outbox``: auditing on, AUDIT_OUTBOX=true (the default): the UPDATE event commits into ``audit_outbox``;
- ``direct``: auditing on, AUDIT_OUTBOX=false: the UPDATE event is inserted into ``audit_logs`` in the change's
  transaction, as before the outbox;
- ``off``: AUDIT_ENABLED=false.

Each round POSTs the user edit form (a new full name each time: one UPDATE event and one REQUEST event per request
when audited) ``--requests`` times per side, the sides in a different order each round, then flushes the side's
writer, so the outbox's moves and the writer's batches count in that side's figures. It reads the CPU time of this
process (request handling and the writer thread; the test client stands in for the WSGI server) and of the database's
backends (/proc), and prints per side the median CPU ms per request and the median per-round ratio off / side: the
share of an unaudited server's throughput the audited one keeps when the CPU is what limits it. The background sealer
is off on every side (AUDIT_SEAL_INTERVAL=0; ``bench/request_overhead.py`` measures it with the rest). At the end it
checks that every event reached ``audit_logs`` (none left in the outbox), then drops the database.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import drop_database, flask_cli, query, recreate_database, require_venv_tools  # noqa: E402

PASSWORD = "Bench-Passw0rd-123!"
USERS = 4
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
SIDES = ("outbox", "direct", "off")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Audited POST cost: domain event via the outbox vs direct vs off.")
    parser.add_argument("--rounds", type=int, default=12, help="rounds (each side once per round; default %(default)s)")
    parser.add_argument("--requests", type=int, default=400, help="POSTs per side and round (default %(default)s)")
    parser.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432",
                        help="PostgreSQL server, no database name (default: %(default)s)")
    parser.add_argument("--db-name", default="ap_bench_outbox", help="throwaway database (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for both audited sides, e.g. AUDIT_REQUEST_METHODS=NONE (repeatable)")
    args = parser.parse_args(argv)
    args.settings = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.isupper():
            parser.error(f"--set {item!r}: expected NAME=VALUE")
        args.settings[name] = value
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")
    return args


def backend_cpu_seconds(database_url: str, name: str) -> float:
    pids = [row[0] for row in query(database_url, "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Side:
    """One copy of the app, logged in as the admin, with the edit form's CSRF token and the session cookie."""

    def __init__(self, name: str, database_url: str, data_dir: Path, extra: dict):
        from audit_portal import create_app
        from audit_portal.config import BaseConfig, _coerce

        extra = {key: _coerce(value, getattr(BaseConfig, key, "")) for key, value in extra.items()}
        settings = {"outbox": extra, "direct": {**extra, "AUDIT_OUTBOX": False}, "off": {"AUDIT_ENABLED": False}}[name]
        self.name = name
        self.app = create_app({
            "SQLALCHEMY_DATABASE_URI": database_url, "APP_ENV": "development", "RATELIMIT_ENABLED": False,
            "AUDIT_SEAL_INTERVAL": 0, "AUDIT_DATA_DIR": str(data_dir / name), "SECRET_KEY": "bench-" * 8, **settings,
        })
        self.client = self.app.test_client()
        token = CSRF_RE.search(self.client.get("/auth/login").get_data(as_text=True))[1]
        answer = self.client.post("/auth/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
        if answer.status_code != 302:
            raise SystemExit(f"{name}: login answered {answer.status_code}")
        self.token = CSRF_RE.search(self.client.get("/admin/users/2/edit").get_data(as_text=True))[1]
        self.cookie = self.client.get_cookie("session").value  # sent as it is each time, as a browser would
        self.sent = 0

    def post(self, count: int) -> None:
        for _ in range(count):
            self.sent += 1
            number = self.sent % USERS
            self.client.set_cookie("session", self.cookie)
            answer = self.client.post(f"/admin/users/{number + 2}/edit", data={
                "csrf_token": self.token, "username": f"benchuser{number}", "email": f"benchuser{number}@example.com",
                "role": "user", "full_name": f"{self.name} {self.sent}", "submit": "Save changes"})
            if answer.status_code != 302:
                raise SystemExit(f"{self.name}: the edit answered {answer.status_code}")
        if not self.app.extensions["audit_writer"].flush():
            raise SystemExit(f"{self.name}: the writer did not drain")


def main(argv=None) -> int:
    args = parse_args(argv)
    require_venv_tools("flask")
    database_url = f"{args.pg_url}/{args.db_name}"
    recreate_database(args.pg_url.replace("+psycopg2", ""), args.db_name)
    try:
        with tempfile.TemporaryDirectory(prefix="ap-bench-outbox-") as tmp:
            env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "development",
                   "AUDIT_DATA_DIR": str(Path(tmp) / "cli")}
            flask_cli(env, "db", "upgrade")
            flask_cli(env, "users", "create-admin", "--username", "admin", "--email", "admin@example.com",
                      "--password", PASSWORD)
            for i in range(USERS):
                flask_cli(env, "users", "create", "--username", f"benchuser{i}", "--email",
                          f"benchuser{i}@example.com", "--password", PASSWORD, "--role", "user")
            sides = {name: Side(name, database_url, Path(tmp), args.settings) for name in SIDES}
            plain_url = database_url.replace("+psycopg2", "")
            for side in sides.values():
                side.post(50)  # warm-up
            cpu = {name: [] for name in SIDES}
            orders = list(itertools.permutations(SIDES))
            for number in range(args.rounds):
                for name in orders[number % len(orders)]:
                    backend, app = backend_cpu_seconds(plain_url, args.db_name), time.process_time()
                    sides[name].post(args.requests)
                    app_ms = (time.process_time() - app) * 1000 / args.requests
                    time.sleep(0.05)
                    pg_ms = (backend_cpu_seconds(plain_url, args.db_name) - backend) * 1000 / args.requests
                    cpu[name].append((app_ms, pg_ms))
                print(f"  round {number + 1}/{args.rounds}: " + ", ".join(
                    f"{name} {sum(cpu[name][-1]):.2f}" for name in SIDES) + " CPU ms/request", flush=True)
            for side in sides.values():
                side.app.extensions["audit_writer"].close()
            left = query(plain_url, "SELECT count(*) FROM audit_outbox")[0][0]
            updates = query(plain_url, "SELECT count(*) FROM audit_logs WHERE action_type = 'UPDATE'")[0][0]
            report(args, cpu, left, updates, sum(sides[name].sent for name in ("outbox", "direct")))
    finally:
        drop_database(args.pg_url.replace("+psycopg2", ""), args.db_name)
    return 0


def report(args, cpu: dict, left: int, updates: int, audited: int) -> None:
    print(f"\nAudited POST /admin/users/<id>/edit, in-process, {args.rounds} rounds x {args.requests} requests per side")
    print(f"{'side':8} {'app ms':>8} {'db ms':>8} {'total':>8} {'off/side, median':>18} {'IQR':>13}")
    for name in SIDES:
        app_ms = statistics.median(a for a, _ in cpu[name])
        pg_ms = statistics.median(p for _, p in cpu[name])
        ratios = [sum(off) / sum(mine) for mine, off in zip(cpu[name], cpu["off"], strict=True)]
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        print(f"{name:8} {app_ms:8.3f} {pg_ms:8.3f} {app_ms + pg_ms:8.3f} {statistics.median(ratios):18.3f} "
              f"{quartiles[0]:6.3f}-{quartiles[2]:.3f}")
    direct_vs_outbox = [sum(d) / sum(o) for o, d in zip(cpu["outbox"], cpu["direct"], strict=True)]
    print(f"outbox / direct CPU per request, median of rounds: {1 / statistics.median(direct_vs_outbox):.3f}")
    verdict = "no loss" if updates == audited and left == 0 else "EVENTS MISSING"
    print(f"UPDATE events in audit_logs: {updates:,} for {audited:,} audited edits (warm-up included); "
          f"left in the outbox: {left} -> {verdict}")


if __name__ == "__main__":
    sys.exit(main())
