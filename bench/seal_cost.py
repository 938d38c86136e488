#!/usr/bin/env python3
"""What sealing an audit row costs: CPU per row in the app and in PostgreSQL, with an optional profile.

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/seal_cost.py                 # 8 rounds of 4,000 rows, about a minute
    .venv/bin/python bench/seal_cost.py --profile       # and the app's 15 costliest functions (CPU clock)

It creates a throwaway PostgreSQL database (``--db-name``, dropped first and at the end) and migrates it. Each
round inserts ``--rows`` REQUEST events the way the background writer does (``insert_events`` in batches of 50;
not timed), then seals them with ``integrity.seal.seal()`` as the sealer does, reading the CPU time of this
thread (``time.thread_time``) and of the PostgreSQL backend (``/proc``; one pooled connection) around it. It
prints the median CPU per sealed row of each, with quartiles: the keyed and the public chain, the row hash and the
five personal fields' commitments (``integrity/canonical.py``), the links' insert and the late-commit check.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    app_env,
    cpu_seconds,
    drop_database,
    flask_cli,
    recreate_database,
    summarise,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPU per sealed audit row, app and PostgreSQL.")
    parser.add_argument("--rounds", type=int, default=8, help="rounds (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=4000, help="rows sealed per round (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="profile the sealing (CPU clock) and print the top 15")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="ap_bench_seal_cost")
    return parser.parse_args(argv)


def measure(args, url: str) -> tuple[list[float], list[float], cProfile.Profile | None]:
    from sqlalchemy import text

    from audit_portal import create_app
    from audit_portal.audit.integrity.seal import seal
    from audit_portal.audit.record.enums import ActionType, ResourceType, Status
    from audit_portal.audit.record.events import build_event
    from audit_portal.audit.write.inserts import insert_events
    from audit_portal.extensions import db
    from audit_portal.timeutil import utcnow

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "x" * 48, "AUDIT_HMAC_KEY": "y" * 48,
                      "AUDIT_SEAL_INTERVAL": 0, "AUDIT_DATA_DIR": tempfile.mkdtemp(), "LOG_LEVEL": "WARNING",
                      "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}})
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    app_ms, pg_ms = [], []
    with app.app_context():
        with db.engine.connect() as conn:
            backend = conn.scalar(text("SELECT pg_backend_pid()"))
        for _ in range(args.rounds):
            for _ in range(0, args.rows, 50):
                with db.engine.begin() as conn:
                    insert_events(conn, [build_event(
                        ActionType.REQUEST, ResourceType.REQUEST, None, "GET /admin/users/ answered 200",
                        status=Status.SUCCESS, http_method="GET", path="/admin/users/", status_code=200,
                        duration_ms=4, timestamp=utcnow(), ip_address="127.0.0.1", username="bench_admin")
                        for _ in range(50)])
            app_before, pg_before = time.thread_time(), cpu_seconds(backend)
            if profile:
                profile.enable()
            result = seal()
            if profile:
                profile.disable()
            app_after, pg_after = time.thread_time(), cpu_seconds(backend)
            sealed = result.sealed
            app_ms.append((app_after - app_before) * 1000 / sealed)
            pg_ms.append((pg_after - pg_before) * 1000 / sealed)
    return app_ms, pg_ms, profile


def spread(values: list[float]) -> str:
    figures = summarise(values)
    return f"{figures['median']:.4f} ms [{figures['q1']:.4f}-{figures['q3']:.4f}]"


def main(argv=None) -> int:
    args = parse_args(argv)
    url = f"{args.pg_url}/{args.db_name}"
    recreate_database(args.pg_url, args.db_name)
    try:
        flask_cli(app_env(url, Path(tempfile.gettempdir()) / f"{args.db_name}_data", "x" * 48, "y" * 48), "db", "upgrade")
        app_ms, pg_ms, profile = measure(args, url)
    finally:
        drop_database(args.pg_url, args.db_name)
    print(f"sealing, CPU per row over {args.rounds} rounds of {args.rows:,} (median [quartiles]):")
    print(f"  app        {spread(app_ms)}")
    print(f"  PostgreSQL {spread(pg_ms)}")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
