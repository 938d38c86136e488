#!/usr/bin/env python3
"""What writing audit rows costs: SQLAlchemy's Core insert against ``audit/write/inserts.py`` (``insert_events``).

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/insert_paths.py              # 10 rounds, about 2 minutes
    .venv/bin/python bench/insert_paths.py --rounds 3   # smoke run

It creates a throwaway PostgreSQL database (``--db-name``, dropped first and at the end), migrates it and
creates an admin, then measures two write paths, each both ways, alternating the order from round to round:

- ``one in a transaction``: what a domain event costs: ``UPDATE users`` + one audit row + ``COMMIT``, minus
  the same transaction without the audit row (``none``);
- ``batch of N``: what the background writer does: N request events in one transaction, replays ignored
  (``ON CONFLICT (event_id) DO NOTHING``).

``core`` is SQLAlchemy's insert as the writers used it before (a cached Core ``insert()``, executed with the
row dicts; the batch with ``RETURNING`` so that SQLAlchemy sends multi-row VALUES); ``inserts`` is
``audit.inserts.insert_events``: a single row as ``VALUES`` with the driver's parameters, a batch as one JSON
parameter expanded by ``json_populate_recordset``. It reads the CPU time of this thread (``time.thread_time``)
and of the PostgreSQL backend (``/proc``) around each share, and prints medians per row with quartiles, and
the ratios inserts / core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import app_env, cpu_seconds, drop_database, flask_cli, recreate_database  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPU per audit row: SQLAlchemy Core insert vs audit.inserts.")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds (default: %(default)s)")
    parser.add_argument("--single", type=int, default=800,
                        help="transactions per path and round for one row in a transaction (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=4000, help="rows per path and round for batches (default: %(default)s)")
    parser.add_argument("--batch", type=int, nargs="+", default=[40, 400],
                        help="batch sizes (default: %(default)s; 40 is about what the writer gathers in its "
                             "250 ms at 160 audited requests/s)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="ap_bench_insert_paths")
    return parser.parse_args(argv)


def quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"[{q1:.4f}-{q3:.4f}]"


def main(argv=None) -> int:
    args = parse_args(argv)
    url = f"{args.pg_url}/{args.db_name}"
    recreate_database(args.pg_url, args.db_name)
    try:
        env = app_env(url, Path(tempfile.gettempdir()) / f"{args.db_name}_data", "x" * 48, "y" * 48)
        flask_cli(env, "db", "upgrade")
        flask_cli(env, "users", "create-admin", "--username", "bench_admin", "--password", "bench-admin-password-1",
                  "--email", "bench_admin@example.com")
        results = measure(args, url)
    finally:
        drop_database(args.pg_url, args.db_name)
    report(results)
    return 0


def measure(args, url: str) -> dict[str, dict[str, list[tuple[float, float]]]]:
    from sqlalchemy import insert, text
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    from audit_portal import create_app
    from audit_portal.audit.record.enums import ActionType, ResourceType
    from audit_portal.audit.record.events import build_event
    from audit_portal.audit.record.models import AuditLog
    from audit_portal.audit.write.inserts import insert_events
    from audit_portal.extensions import db
    from audit_portal.timeutil import utcnow

    table = AuditLog.__table__
    core_single = insert(table)
    core_batch = pg_insert(table).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.id)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "x" * 48, "AUDIT_HMAC_KEY": "y" * 48,
                      "AUDIT_SEAL_INTERVAL": 0, "AUDIT_DATA_DIR": tempfile.mkdtemp(), "LOG_LEVEL": "WARNING",
                      "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}})

    def update_event() -> dict:
        return build_event(ActionType.UPDATE, ResourceType.USER, 1, "bench_admin updated user bench_admin: full_name",
                           timestamp=utcnow(), user_id=1, username="bench_admin", ip_address="127.0.0.1",
                           user_agent_="audit-portal-bench/1.0", request_id_="r" * 36,
                           metadata={"old": {"full_name": "A"}, "new": {"full_name": "B"}})

    def request_event() -> dict:
        return build_event(ActionType.REQUEST, ResourceType.REQUEST, None, "POST /admin/users/1/edit answered 302",
                           timestamp=utcnow(), user_id=1, username="bench_admin", ip_address="127.0.0.1",
                           user_agent_="audit-portal-bench/1.0", request_id_="r" * 36, http_method="POST",
                           path="/admin/users/1/edit", status_code=302, duration_ms=7)

    single_paths = {
        "none": lambda connection, event: None,
        "core": lambda connection, event: connection.execute(core_single, event),
        "inserts": lambda connection, event: insert_events(connection, [event]),
    }
    batch_paths = {
        "core": lambda connection, events: connection.execute(core_batch, events),
        "inserts": lambda connection, events: insert_events(connection, events, ignore_duplicates=True),
    }
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with app.app_context():
        with db.engine.connect() as connection:
            backend = connection.scalar(text("SELECT pg_backend_pid()"))
        print(f"* {args.rounds} rounds: {args.single} single-row transactions and {args.rows:,} rows in batches "
              f"of {', '.join(map(str, args.batch))} per path", flush=True)
        for round_ in range(args.rounds):
            order = 1 if round_ % 2 == 0 else -1
            for name, path in list(single_paths.items())[::order]:
                events = [update_event() for _ in range(args.single)]
                thread, server = time.thread_time(), cpu_seconds(backend)
                for number, event in enumerate(events):
                    with db.engine.begin() as connection:
                        connection.execute(text("UPDATE users SET full_name = :name WHERE id = 1"),
                                           {"name": f"{name} {round_} {number}"})
                        path(connection, event)
                results.setdefault("one in a transaction", {}).setdefault(name, []).append(
                    (1000 * (time.thread_time() - thread) / len(events),
                     1000 * (cpu_seconds(backend) - server) / len(events)))
            for size in args.batch:
                for name, path in list(batch_paths.items())[::order]:
                    batches = [[request_event() for _ in range(size)] for _ in range(max(1, args.rows // size))]
                    thread, server = time.thread_time(), cpu_seconds(backend)
                    for events in batches:
                        with db.engine.begin() as connection:
                            path(connection, events)
                    rows = len(batches) * size
                    results.setdefault(f"batch of {size}", {}).setdefault(name, []).append(
                        (1000 * (time.thread_time() - thread) / rows, 1000 * (cpu_seconds(backend) - server) / rows))
    return results


def report(results: dict) -> None:
    print("\nCPU ms per audit row, median of the rounds [quartiles] (app = this thread, pg = its backend):")
    for scenario, paths in results.items():
        print(f"  {scenario}:")
        base = paths.get("none")
        medians = {}
        for name, values in paths.items():
            if base is not None and name != "none":
                # The audit row's share: the same round's transaction without it subtracted.
                values = [(a - b[0], p - b[1]) for (a, p), b in zip(values, base, strict=True)]
            elif name == "none":
                continue
            app_values, pg_values = [v[0] for v in values], [v[1] for v in values]
            medians[name] = (statistics.median(app_values), statistics.median(pg_values))
            print(f"    {name:<7} app {medians[name][0]:.4f} {quartiles(app_values):<17} "
                  f"pg {medians[name][1]:.4f} {quartiles(pg_values)}")
        (core_app, core_pg), (new_app, new_pg) = medians["core"], medians["inserts"]
        print(f"    inserts / core: app {new_app / core_app:.2f}, pg {new_pg / core_pg:.2f}, "
              f"together {(new_app + new_pg) / (core_app + core_pg):.2f}")


if __name__ == "__main__":
    sys.exit(main())
