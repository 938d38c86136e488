#!/usr/bin/env python3
"""How long ``flask --app wsgi demo seed --count N --yes`` takes on PostgreSQL, phase by phase, and what each lever
of the seed is worth. Issue 20's target: 1,000,000 events in at most 3 minutes on the project's 2-core machine.

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/seed.py                                   # 1,000,000 events, 2 runs: about 2-4 minutes
    .venv/bin/python bench/seed.py --count 100000 --runs 1           # a quick look
    git worktree add /tmp/seed-old <commit> && \\
    .venv/bin/python bench/seed.py --baseline /tmp/seed-old          # old and new side by side, alternating
    .venv/bin/python bench/seed.py --levers --runs 0                 # only the levers, in this process

What it does (docs/performance.md, "Seeding", has the figures):

1. ``--runs`` times (old then new, then new then old, ... when ``--baseline`` names a checkout of other code):
   makes the throwaway database ``--db-name`` afresh, runs ``flask db upgrade`` with that code, then times the
   real command, reading its output as it comes: the load (rows made and copied: the progress bar), the index
   rebuild (from "Rebuilding indexes...", with the error rollup's recount) and the VACUUM (ANALYZE), and the
   whole command (app start included). The machine is shared: compare runs made side by side, not with
   figures from another day.
2. Generation alone (no database): the rows of N events made ready for COPY, rows/s, by this code and the
   baseline's (which made ``build_event`` dicts and wrote them with the csv module).
3. ``--levers``: in this process, on a fresh database each, the load phase of the new code with the next chunk
   made in a thread meanwhile (as the command does) and without (made, then copied, in turn).
4. Drops the database at the end, even on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, BenchError, drop_database, recreate_database  # noqa: E402

#: The virtualenv's bin (the one running this script: ``.venv/bin/python bench/seed.py``).
BIN = Path(sys.executable).parent
#: Lines of the command's output that start a phase.
PHASES = {"Seeding audit events": "load", "Rebuilding indexes...": "rebuild",
          "Vacuuming and analysing audit_logs...": "vacuum", "Inserted ": "end"}
GENERATION = """
import csv, io, sys, time
from audit_portal.audit.demo import bulk, seed
from audit_portal.audit.record.models import EVENT_COLUMNS
n = int(sys.argv[1])
users = [(i, f"user{i}") for i in range(1, 51)]
start, rows = time.perf_counter(), 0
if hasattr(seed, "generate_chunks"):
    for chunk in seed.generate_chunks(n, users):
        text = "".join(chunk.lines)  # what COPY reads
        rows += len(chunk.lines)
else:  # the code before issue 20's item 6: build_event dicts, written with the csv module in batches of 5,000
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for event in seed.generate(n, users):
        writer.writerow(["" if (v := bulk._csv_value(event[c])) is None else v for c in EVENT_COLUMNS])
        rows += 1
        if rows % 5000 == 0:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
print(rows, time.perf_counter() - start)
"""


def environment(database_url: str, data_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "FLASK_DEBUG", "APP_ENV")}
    env.update(DATABASE_URL=database_url, AUDIT_DATA_DIR=data_dir, PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING")
    return env


def timed_seed(code: Path, args, database_url: str) -> dict:
    """A fresh database migrated by ``code``, then the seed command, its phases timed from its output."""
    recreate_database(args.pg_url, args.db_name)
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as data_dir:
        env = environment(database_url, data_dir)
        subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=code, env=env, check=True,
                       capture_output=True)
        marks, start = {}, time.perf_counter()
        process = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "demo", "seed", "--count", str(args.count),
                                    "--yes"], cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)  # universal newlines: a progress bar's "\r" ends a line too
        for line in process.stdout:
            for text, phase in PHASES.items():
                if line.startswith(text) and phase not in marks:
                    marks[phase] = time.perf_counter() - start
        if process.wait() != 0:
            raise BenchError(f"the seed failed in {code}")
        total = time.perf_counter() - start
    stored = _count(database_url)
    if stored < args.count:
        raise BenchError(f"{code}: {stored:,} rows stored, not {args.count:,}")
    rebuild = marks.get("rebuild", marks["vacuum"])
    return {"total": total, "load": rebuild - marks["load"], "rebuild": marks["vacuum"] - rebuild,
            "vacuum": marks["end"] - marks["vacuum"]}


def _count(database_url: str) -> int:
    from _common import query

    return query(database_url, "SELECT count(*) FROM audit_logs")[0][0]


def generation(code: Path, count: int) -> float:
    """Rows/s of making ``count`` rows ready for COPY with ``code`` (no database)."""
    result = subprocess.run([str(BIN / "python"), "-c", GENERATION, str(count)], cwd=code, check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(code)})
    rows, seconds = result.stdout.split()
    return int(rows) / float(seconds)


def levers(args, database_url: str) -> None:
    """The load phase with and without the next chunk made meanwhile, in this process, each on a fresh database."""
    os.environ.update(DATABASE_URL=database_url, LOG_LEVEL="WARNING")
    sys.path.insert(0, str(ROOT))
    from audit_portal import create_app
    from audit_portal.audit.demo import bulk
    from audit_portal.audit.demo.seed import COLUMNS, generate_chunks

    made_ahead = bulk.made_ahead
    for name, ahead in (("made ahead in a thread", made_ahead), ("made, then copied", lambda items: items)):
        recreate_database(args.pg_url, args.db_name)
        with tempfile.TemporaryDirectory(prefix="bench-seed-") as data_dir:
            subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, check=True,
                           capture_output=True, env=environment(database_url, data_dir))
            app = create_app({"AUDIT_DATA_DIR": data_dir})
            bulk.made_ahead = ahead
            try:
                with app.app_context():
                    start = time.perf_counter()
                    # Below REBUILD_INDEXES_FROM the indexes stay: load with them dropped, as the command does.
                    from audit_portal.extensions import db

                    with db.engine.begin() as connection:
                        saved = bulk.drop_secondary_indexes(connection)
                    chunks = generate_chunks(args.count, [(None, None)])
                    written = bulk.load_chunks(chunks, COLUMNS, args.count, say=lambda _: None)
                    seconds = time.perf_counter() - start
                    with db.engine.begin() as connection:
                        bulk.rebuild_indexes(connection, saved)
            finally:
                bulk.made_ahead = made_ahead
                app.extensions["audit_writer"].close()
        print(f"  {name:<24} load {seconds:6.1f} s  {written / seconds:9,.0f} rows/s (index rebuild not counted)",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2, help="timed runs of the command per code (default 2)")
    parser.add_argument("--baseline", type=Path, help="a checkout of other code, timed side by side")
    parser.add_argument("--levers", action="store_true", help="also time the load with and without overlap")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432"))
    parser.add_argument("--db-name", default="ap_bench_seed")
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.db_name):
        raise SystemExit("--db-name: lower-case letters, digits and underscores")
    database_url = f"{args.pg_url}/{args.db_name}"
    codes = [("new", ROOT)] + ([("old", args.baseline.resolve())] if args.baseline else [])
    try:
        print(f"* generation alone, {args.count:,} rows made ready for COPY", flush=True)
        for name, code in codes:
            print(f"  {name}: {generation(code, args.count):10,.0f} rows/s", flush=True)
        print(f"* flask --app wsgi demo seed --count {args.count} --yes, fresh database each run (seconds)", flush=True)
        for run in range(args.runs):
            for name, code in (codes if run % 2 else codes[::-1]):
                t = timed_seed(code, args, database_url)
                print(f"  run {run + 1} {name}: total {t['total']:6.1f}  load {t['load']:6.1f}  index rebuild "
                      f"{t['rebuild']:5.1f}  vacuum {t['vacuum']:4.1f}  ({args.count / t['total']:,.0f} rows/s)",
                      flush=True)
        if args.levers:
            print(f"* levers, {args.count:,} rows, in this process", flush=True)
            levers(args, database_url)
    finally:
        drop_database(args.pg_url, args.db_name)


if __name__ == "__main__":
    main()
