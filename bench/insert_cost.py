#!/usr/bin/env python3
"""What one audit row costs PostgreSQL to insert, for four index sets of ``audit_logs``, side by side.

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/insert_cost.py              # 20 rounds, about 2 minutes
    .venv/bin/python bench/insert_cost.py --rounds 6   # smoke run

It creates a throwaway database (``--db-name``, dropped first and at the end), migrates it to the latest
revision, and makes four copies of ``audit_logs`` (``CREATE TABLE ... LIKE audit_logs INCLUDING ALL``, with
the foreign key to ``users``):

- ``current``: the indexes of the latest migration;
- ``before_0010``: the same, without migration 0010's indexes for the ``ip_address`` and ``username`` filters;
- ``before_0007``: the same, with migration 0006's full ``severity`` and ``error_type`` indexes and the plain
  ``fingerprint`` index that 0007 replaced with partial ones;
- ``keys_only``: only the primary key and the unique ``event_id``.

Each copy first gets the same 50,000 rows. Then, for ``--rounds`` rounds (the order of the tables alternates
from round to round), it inserts into each table the same kind of rows the request hooks write (REQUEST
events built by ``build_event``, UUID7 event ids), in batches of ``--batch`` rows, one transaction per
batch as the background writer does, and reads the CPU time of its PostgreSQL backend from ``/proc``
around each table's share. It prints the median CPU per row of each table with quartiles, and the ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import app_env, cpu_seconds, drop_database, flask_cli, pg_connect, recreate_database  # noqa: E402

TABLES = ("current", "before_0010", "before_0007", "keys_only")
PATHS = ["/admin/users/", "/admin/users/5/edit", "/admin/audit-logs/", "/api/v1/audit-logs/", "/auth/login"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PostgreSQL CPU per inserted audit row, for four index sets.")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=2000, help="rows per table per round (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=50, help="rows per transaction (default: %(default)s)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="ap_bench_insert_cost")
    return parser.parse_args(argv)


def make_tables(cursor) -> None:
    for table in TABLES:
        cursor.execute(f"DROP TABLE IF EXISTS cost_{table}")
        if table == "keys_only":
            cursor.execute(f"CREATE TABLE cost_{table} (LIKE audit_logs INCLUDING DEFAULTS)")
            cursor.execute(f"ALTER TABLE cost_{table} ADD PRIMARY KEY (id), ADD UNIQUE (event_id)")
        else:
            cursor.execute(f"CREATE TABLE cost_{table} (LIKE audit_logs INCLUDING ALL)")
        cursor.execute(f"ALTER TABLE cost_{table} ADD FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL")
    cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'cost_before_0010' AND (indexdef LIKE "
                   "'%(ip_address,%' OR indexdef LIKE '%(username,%' OR indexdef LIKE '%attempted_username%')")
    for (name,) in cursor.fetchall():
        cursor.execute(f'DROP INDEX "{name}"')
    # Migration 0006's versions of what 0007 changed.
    cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'cost_before_0007' "
                   "AND (indexdef LIKE '%(severity,%' OR indexdef LIKE '%(error_type,%')")
    for (name,) in cursor.fetchall():
        cursor.execute(f'DROP INDEX "{name}"')
    for column in ("severity", "error_type"):
        cursor.execute(f"CREATE INDEX ON cost_before_0007 ({column}, timestamp DESC, id DESC)")
    cursor.execute("CREATE INDEX ON cost_before_0007 (fingerprint)")


def request_rows(count: int, user_ids: list[int]) -> list[tuple]:
    from audit_portal.audit.record.events import build_event
    from audit_portal.audit.record.models import EVENT_COLUMNS
    from audit_portal.timeutil import utcnow

    rows = []
    for _ in range(count):
        method, path = random.choice(["GET", "POST"]), random.choice(PATHS)
        event = build_event("REQUEST", "REQUEST", None, f"{method} {path} answered 200", timestamp=utcnow(),
                            user_id=random.choice(user_ids), username="bench", ip_address="127.0.0.1",
                            user_agent_="audit-portal-bench/1.0", request_id_=str(uuid.uuid4()),
                            http_method=method, path=path, status_code=200, duration_ms=random.randint(1, 30))
        rows.append(tuple(event[column] for column in EVENT_COLUMNS))
    return rows


def main(argv=None) -> int:
    from psycopg2.extras import execute_values

    from audit_portal.audit.record.models import EVENT_COLUMNS

    args = parse_args(argv)
    url = f"{args.pg_url}/{args.db_name}"
    recreate_database(args.pg_url, args.db_name)
    try:
        env = app_env(url, Path("/tmp") / f"{args.db_name}_data", "x" * 48, "y" * 48)
        flask_cli(env, "db", "upgrade")
        flask_cli(env, "users", "create-admin", "--username", "bench_admin", "--password", "bench-admin-password-1",
                  "--email", "bench_admin@example.com")
        connection = pg_connect(url, autocommit=False)
        cursor = connection.cursor()
        make_tables(cursor)
        cursor.execute("SELECT id FROM users")
        user_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
        connection.commit()
        columns = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
        # Table names from TABLES and column names from the model: no outside input.
        statement = "INSERT INTO cost_{} (" + columns + ") VALUES %s ON CONFLICT (event_id) DO NOTHING"  # noqa: S608
        print(f"* {len(TABLES)} copies of audit_logs, 50,000 rows each first", flush=True)
        for table in TABLES:
            execute_values(cursor, statement.format(table), request_rows(50_000, user_ids), page_size=1000)
        connection.commit()
        per_row: dict[str, list[float]] = {table: [] for table in TABLES}
        print(f"* {args.rounds} rounds x {args.rows:,} rows per table, batches of {args.batch}", flush=True)
        for round_ in range(args.rounds):
            for table in (TABLES if round_ % 2 == 0 else tuple(reversed(TABLES))):
                batches = [request_rows(args.batch, user_ids) for _ in range(args.rows // args.batch)]
                before = cpu_seconds(backend)
                for batch in batches:
                    execute_values(cursor, statement.format(table), batch, page_size=args.batch)
                    connection.commit()
                per_row[table].append(1000 * (cpu_seconds(backend) - before) / (len(batches) * args.batch))
        connection.close()
    finally:
        drop_database(args.pg_url, args.db_name)
    print()
    print("PostgreSQL backend CPU per inserted row (ms), median of the rounds [quartiles]:")
    medians = {}
    for table, values in per_row.items():
        q1, _, q3 = statistics.quantiles(values, n=4)
        medians[table] = statistics.median(values)
        print(f"  {table:<12} {medians[table]:.4f}  [{q1:.4f}-{q3:.4f}]")
    print(f"current / before_0010: {medians['current'] / medians['before_0010']:.3f}; "
          f"current / before_0007: {medians['current'] / medians['before_0007']:.3f}; "
          f"keys_only / current: {medians['keys_only'] / medians['current']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
