#!/usr/bin/env python3
"""EXPLAIN (ANALYZE, BUFFERS) of the audit log's queries, with the app's exact SQL, for every filter the viewer
and the error dashboard offer, alone and in the common combinations.

Run by hand against a seeded PostgreSQL database (docs/scaling.md), from the repository root:

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ap_bench_scale \\
        .venv/bin/python bench/explain_filters.py [--summary] [--only NAME ...]

It calls the real functions (``AuditLogRepository.page`` for the list page and its bounded count, the dashboard's
``error_groups``, ``errors_per_day`` and ``errors_without_fingerprint``), records each statement they send,
and prints the plan of each. ``--summary`` prints one line per statement: time, and whether the plan has a
sequential scan or a sort over many rows. Read-only: the statements are SELECTs (EXPLAIN ANALYZE runs them).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cases(newest, user_id: int, fingerprint: str | None, request_id: str | None) -> dict[str, dict]:
    week_end = newest - timedelta(days=3)
    week = {"date_from": week_end - timedelta(days=7), "date_to": week_end}
    hour = {"date_from": newest - timedelta(hours=1)}
    return {
        "no filter": {},
        "date 7 days": week,
        "date last hour": hour,
        "user": {"user_id": user_id},
        "action_type": {"action_type": "LOGIN_FAILED"},
        "action_type rare": {"action_type": "RETENTION_PURGE"},
        "resource_type": {"resource_type": "API_TOKEN"},
        "status": {"status": "FAILURE"},
        "category": {"category": "security"},
        "severity": {"severity": "CRITICAL"},
        "error_type": {"error_type": "KeyError"},
        "fingerprint": {"fingerprint": fingerprint},
        "request_id": {"request_id": request_id},
        # The demo seed has 18 addresses and no rare name: docs/scaling.md (migration 0010) says how the database
        # measured there spread its addresses and names first. Without that these cases find few or no events.
        "ip_address": {"ip_address": "10.0.0.20"},
        "ip_address rare": {"ip_address": "203.0.113.66"},
        "username": {"username": "user1"},
        "username typed": {"username": "root"},
        "username rare": {"username": "mallory"},
        "search common": {"search": "password"},
        "search rare": {"search": "user-344"},
        "action + 7 days": {"action_type": "LOGIN_FAILED", **week},
        "user + 7 days": {"user_id": user_id, **week},
        "user + action": {"user_id": user_id, "action_type": "UPDATE"},
        "status + 7 days": {"status": "ERROR", **week},
        "category + status": {"category": "security", "status": "FAILURE"},
        "severity + 7 days": {"severity": "ERROR", **week},
        "search + 7 days": {"search": "password", **week},
        "user + search": {"user_id": user_id, "search": "password"},
        "ip_address + 7 days": {"ip_address": "10.0.0.20", **week},
        "username + action": {"username": "user1", "action_type": "LOGIN_FAILED"},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", action="store_true", help="one line per statement instead of the plans")
    parser.add_argument("--only", nargs="*", help="case names (substrings) to run")
    parser.add_argument("--no-dashboard", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("APP_ENV", "development")
    os.environ.setdefault("AUDIT_SEAL_INTERVAL", "0")
    from sqlalchemy import event, func, select

    from audit_portal import create_app
    from audit_portal.audit.read.dashboard import error_groups, errors_per_day, errors_without_fingerprint
    from audit_portal.audit.read.query import AuditFilters, AuditLogRepository
    from audit_portal.audit.record.models import AuditLog
    from audit_portal.extensions import db

    app = create_app({"AUDIT_ENABLED": False, "AUDIT_SEAL_INTERVAL": 0})
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            raise SystemExit("DATABASE_URL must point at PostgreSQL")
        newest = db.session.scalar(select(func.max(AuditLog.timestamp)))
        fingerprint = db.session.scalar(select(AuditLog.fingerprint).where(AuditLog.fingerprint.is_not(None)).limit(1))
        request_id = db.session.scalar(select(AuditLog.request_id).where(AuditLog.id == 5000))
        rows = db.session.scalar(select(func.count()).select_from(AuditLog))
        deep = db.session.scalar(select(AuditLog).order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
                                 .offset(min(50_000, rows // 2)).limit(1))
        recorded: list[tuple[str, object]] = []

        def record(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT") and "audit_logs" in statement:
                recorded.append((statement, parameters))

        runs: list[tuple[str, callable]] = []
        for name, values in cases(newest, 5, fingerprint, request_id).items():
            runs.append((f"list: {name}", lambda v=values: AuditLogRepository().page(AuditFilters(**v), 0, 50)))
        from audit_portal.audit.read.query import make_cursor

        def deep_page(values):
            filters = AuditFilters(**values)
            return AuditLogRepository().page(filters, 0, 50, make_cursor(deep, filters, "list"))

        runs.append(("list: page 1000 by cursor", lambda: deep_page({})))
        if not args.no_dashboard:
            week_end = newest - timedelta(days=3)
            week = {"date_from": week_end - timedelta(days=7), "date_to": week_end}
            runs += [
                ("dashboard: groups", lambda: error_groups(AuditFilters(), 0, 50)),
                ("dashboard: groups 7 days", lambda: error_groups(AuditFilters(**week), 0, 50)),
                ("dashboard: one group", lambda: error_groups(AuditFilters(fingerprint=fingerprint), 0, 1)),
                ("dashboard: groups username", lambda: error_groups(AuditFilters(status="ERROR", username="user1"))),
                ("dashboard: groups ip_address",
                 lambda: error_groups(AuditFilters(status="ERROR", ip_address="10.0.0.20"))),
                ("dashboard: per day", lambda: errors_per_day(AuditFilters())),
                ("dashboard: without fingerprint", lambda: errors_without_fingerprint(AuditFilters(status="ERROR"))),
            ]
        if args.only:
            runs = [(n, f) for n, f in runs if any(o in n for o in args.only)]
        raw = db.engine.raw_connection()
        for name, run in runs:
            recorded.clear()
            event.listen(db.engine, "before_cursor_execute", record)
            try:
                run()
            finally:
                event.remove(db.engine, "before_cursor_execute", record)
                db.session.rollback()
            for statement, parameters in recorded:
                with raw.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                    plan = "\n".join(row[0] for row in cursor.fetchall())
                raw.rollback()
                kind = "count" if "count(*)" in statement.lower() and "LIMIT" in statement and "groups" not in statement \
                    else "query"
                total = re.search(r"Execution Time: ([0-9.]+) ms", plan)
                flags = []
                if "Seq Scan" in plan:
                    flags.append("SEQ SCAN")
                sorts = [int(m) for m in re.findall(r"Sort.*?rows=(\d+) loops", plan)]
                if any(n > 10_000 for n in sorts):
                    flags.append(f"SORT {max(sorts):,} rows")
                if args.summary:
                    print(f"{name:<38} {kind:<6} {float(total[1]) if total else -1:>10.1f} ms  {' '.join(flags)}")
                else:
                    print(f"=== {name} [{kind}] {' '.join(flags)}\n{cursor_sql(statement, parameters)}\n{plan}\n",
                          flush=True)
        raw.close()
    return 0


def cursor_sql(statement: str, parameters) -> str:
    text = " ".join(statement.split())
    return f"-- {text}\n-- params: {parameters}"


if __name__ == "__main__":
    sys.exit(main())
