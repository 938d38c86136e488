#!/usr/bin/env python3
"""Export speed and memory: the CSV, JSON and NDJSON downloads of the API against PostgreSQL's own ``COPY ... TO STDOUT``.

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/export.py            # 10,000 and 1,000,000 rows; about 5-10 minutes
    .venv/bin/python bench/export.py --quick    # 10,000 and 100,000 rows; under a minute

What it does (docs/performance.md, "Export", explains how to read the result):

1. Creates a throwaway PostgreSQL database (dropped first if it exists), runs ``flask db upgrade``, makes an
   admin with ``flask users create-admin`` and an API token for it with ``flask tokens create``.
2. For each size N, smallest first: tops the audit log up to N rows with ``flask demo seed --count ... --yes``
   (COPY-based; from 500,000 rows on it drops and rebuilds the indexes; it ends with VACUUM (ANALYZE)), and (re)starts
   gunicorn fresh as in production: ``--config gunicorn.conf.py``, 2 sync workers, APP_ENV=production with
   SECRET_KEY and AUDIT_HMAC_KEY set, AUDIT_SEAL_INTERVAL=0 (no background sealing competing),
   AUDIT_EXPORT_MAX_ROWS above N, RATELIMIT_ENABLED=false.
3. After one unmeasured warm-up of each, runs ``--pairs`` rounds; a round pairs each format's export with a COPY,
   alternating the order (export then COPY, then COPY then export, ...):
     export  GET /api/v1/audit-logs/export?format=csv (json, ndjson) with the token, read by a plain-socket client
             in 1 MiB chunks into a reused buffer (the bytes go nowhere), until the server closes the connection;
             the answer must be a 200 that ends with the last chunk of the chunked encoding (a complete file);
     COPY    ``COPY (SELECT <the exporter's CSV columns, same order> FROM audit_logs ORDER BY timestamp DESC,
             id DESC) TO STDOUT WITH (FORMAT csv, HEADER)`` through psycopg2's ``copy_expert`` to a null sink;
   and prints rows/second of each and, per format, the median of the per-pair ratios export/COPY with quartiles
   and range. Rows per run: the X-Total-Count of the export, the rowcount of the COPY (every export adds one
   EXPORT row, so N grows by one per run). ``--json-runs`` sets the JSON and NDJSON rounds (default: ``--pairs``;
   0 measures CSV only).
4. Memory: VmHWM (peak resident set size) of the gunicorn workers from /proc right after the fresh start and
   after all the runs, plus the largest VmRSS sampled every 20 ms during the downloads. The workers start fresh
   for every size, so the peaks of two sizes compare directly.
5. Disconnect check at the largest size, CSV and JSON: starts a download, reads 64 KiB, closes the socket, and
   watches pg_stat_activity until no connection of the database is "idle in transaction" or "active" (the
   server-side cursor of the export must be closed and its transaction ended when the client goes away).
6. Tears everything down (server, database, temporary files) even on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402 - after the path set-up
    USER_AGENT,
    BenchError,
    Server,
    app_env,
    drop_database,
    flask_cli,
    memory_kib,
    pg_connect,
    query,
    recreate_database,
    require_venv_tools,
    summarise,
)

ADMIN = ("bench_admin", "bench-admin-password-1")
EXPORT_PATH = "/api/v1/audit-logs/export?format={fmt}"
FULL = {"sizes": [10_000, 1_000_000], "pairs": 11}
QUICK = {"sizes": [10_000, 100_000], "pairs": 5}
#: Below this size a run takes a fraction of a second: more pairs cost little and steady the median.
SMALL = 100_000
TARGET_RATIO = 0.20
#: JSON and NDJSON (issue 20, item 7): a quarter of COPY's speed.
TARGET_JSON_RATIO = 0.25
FORMATS = ("csv", "json", "ndjson")
TARGET_MEMORY_MB = 50
CHUNK = 1 << 20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CSV export through the API against PostgreSQL's COPY of the same rows (alternating runs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: defaults become {QUICK}")
    parser.add_argument("--sizes", type=lambda s: [int(x.replace("_", "")) for x in s.split(",")],
                        help=f"comma-separated row counts, ascending (default {FULL['sizes']}, --quick {QUICK['sizes']})")
    parser.add_argument("--pairs", type=int, help=f"export/COPY pairs per size; sizes up to {SMALL:,} rows get at "
                                                  f"least 15 (default {FULL['pairs']}, --quick {QUICK['pairs']})")
    parser.add_argument("--json-runs", type=int, help="JSON and NDJSON export/COPY pairs per size; 0 measures CSV "
                                                      "only (default: as many as the CSV pairs)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (without database name) where the throwaway database is made")
    parser.add_argument("--db-name", default="ap_bench_export", help="throwaway database (dropped and recreated)")
    parser.add_argument("--port", type=int, default=8781, help="gunicorn port")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (server logs)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end (to inspect it)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    for name, default in base.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if not args.sizes or any(n < 1 for n in args.sizes) or args.sizes != sorted(set(args.sizes)):
        parser.error("--sizes: positive row counts in ascending order")
    if args.pairs < 1 or (args.json_runs is not None and args.json_runs < 0):
        parser.error("--pairs must be at least 1 and --json-runs at least 0")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.db_name):
        parser.error("--db-name: lower-case letters, digits and underscores only")
    return args


# -- the two sides -------------------------------------------------------------------------------


@dataclass
class Download:
    status: int
    rows: int  # X-Total-Count
    bytes: int  # body and chunk framing
    seconds: float
    complete: bool  # ended with the last chunk of the chunked encoding


def _request_bytes(path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Authorization: Bearer {token}\r\nAccept-Encoding: identity\r\n\r\n").encode()


def _head(data: bytes) -> tuple[int, dict[str, str]]:
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def download(port: int, path: str, token: str) -> Download:
    """GET ``path`` and read the whole answer into a reused buffer (the bytes go nowhere)."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    head = b""
    total = 0
    tail = b""
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        started = time.perf_counter()
        sock.sendall(_request_bytes(path, token))
        while True:
            n = sock.recv_into(view)
            if not n:
                break
            if len(head) < 4096 and b"\r\n\r\n" not in head:
                head += bytes(view[:n])
            total += n
            tail = (tail + bytes(view[max(0, n - 7):n]))[-7:]
        seconds = time.perf_counter() - started
    status, headers = _head(head)
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    complete = status == 200 and (tail.endswith(b"\r\n0\r\n\r\n") if chunked else True)
    return Download(status, int(headers.get("x-total-count", 0)), total, seconds, complete)


class NullSink:
    """A file-like object for ``copy_expert`` that only counts bytes."""

    def __init__(self):
        self.bytes = 0

    def write(self, data) -> int:
        self.bytes += len(data)
        return len(data)


def copy_sql() -> str:
    from audit_portal.audit.read.export import CSV_COLUMNS

    columns = ", ".join(f'"{name}"' for name in CSV_COLUMNS)
    return (f"COPY (SELECT {columns} FROM audit_logs ORDER BY \"timestamp\" DESC, id DESC) "  # noqa: S608 - constants
            "TO STDOUT WITH (FORMAT csv, HEADER)")


def run_copy(connection, sql: str) -> tuple[int, int, float]:
    """(rows, bytes, seconds) of one COPY to a null sink."""
    sink = NullSink()
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.copy_expert(sql, sink)
        seconds = time.perf_counter() - started
        rows = cursor.rowcount
    return rows, sink.bytes, seconds


# -- memory --------------------------------------------------------------------------------------


class RssSampler:
    """Largest VmRSS of each worker, sampled every ``interval`` seconds while running."""

    def __init__(self, pids: list[int], interval: float = 0.02):
        self.pids, self.interval = pids, interval
        self.peak_kib = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                rss = memory_kib(pid).get("VmRSS", 0)
                if rss > self.peak_kib[pid]:
                    self.peak_kib[pid] = rss
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def hwm_mib(pids: list[int]) -> dict[int, float]:
    return {pid: memory_kib(pid).get("VmHWM", 0) / 1024 for pid in pids}


# -- disconnect ----------------------------------------------------------------------------------


def in_transaction(connection, db_name: str) -> list[tuple]:
    """The app's connections to the database that are inside a transaction: running a statement ("active",
    e.g. fetching the next batch) or waiting in one ("idle in transaction", e.g. blocked on a full socket)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, state, left(query, 80) FROM pg_stat_activity WHERE datname = %s "
                       "AND (state = 'active' OR state LIKE 'idle in transaction%%') AND pid <> pg_backend_pid()",
                       (db_name,))
        return cursor.fetchall()


def disconnect_check(port: int, token: str, fmt: str, connection, db_name: str, wait: float = 5.0) -> dict:
    """Read 64 KiB of an export, close the socket, and time how long the app keeps a transaction open."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(_request_bytes(EXPORT_PATH.format(fmt=fmt), token))
        received = 0
        while received < 64 * 1024:
            data = sock.recv(16384)
            if not data:
                break
            received += len(data)
        during = in_transaction(connection, db_name)
        # Unread data in the receive buffer: close() sends a reset, as a browser's cancelled download does.
    closed = time.monotonic()
    left = in_transaction(connection, db_name)
    while left and time.monotonic() - closed < wait:
        time.sleep(0.05)
        left = in_transaction(connection, db_name)
    return {"format": fmt, "read_bytes": received, "in_transaction_during_download": [row[1] for row in during],
            "released_after_s": None if left else round(time.monotonic() - closed, 2),
            "left_in_transaction": [list(row) for row in left]}


# -- the benchmark -------------------------------------------------------------------------------


def rows_in(database_url: str) -> int:
    return query(database_url, "SELECT count(*) FROM audit_logs")[0][0]


def top_up(database_url: str, env: dict, size: int) -> None:
    missing = size - rows_in(database_url)
    if missing > 0:
        print(f"* seeding {missing:,} demo events (flask demo seed) to reach {size:,} rows", flush=True)
        started = time.monotonic()
        flask_cli(env, "demo", "seed", "--count", str(missing), "--yes")
        print(f"  seeded in {time.monotonic() - started:.0f} s (the seed ends with VACUUM (ANALYZE))", flush=True)


def measure_size(args, size: int, server: Server, token: str, database_url: str) -> dict:
    server.stop()
    server.start()
    server.wait_ready()
    pids = server.worker_pids()
    start_hwm = hwm_mib(pids)
    connection = pg_connect(database_url)
    sql = copy_sql()
    pairs = max(args.pairs, 15) if size <= SMALL else args.pairs
    json_pairs = pairs if args.json_runs is None else args.json_runs
    runs = {fmt: {"export": [], "copy": [], "ratios": []} for fmt in FORMATS}
    failures = []
    try:
        def one_export(fmt: str) -> float:
            result = download(args.port, EXPORT_PATH.format(fmt=fmt), token)
            if not result.complete:
                failures.append(f"{fmt} export answered {result.status}, complete={result.complete} "
                                f"after {result.bytes:,} bytes in {result.seconds:.1f} s")
                return float("nan")
            runs[fmt]["export"].append(result)
            return result.rows / result.seconds

        def one_copy(fmt: str) -> float:
            rows, size_bytes, seconds = run_copy(connection, sql)
            runs[fmt]["copy"].append((rows, size_bytes, seconds))
            return rows / seconds

        with RssSampler(pids) as sampler:
            formats = FORMATS if json_pairs else FORMATS[:1]
            print(f"* {size:,} rows: warm-up (one export of each format, one COPY), then {pairs} rounds of "
                  f"alternated export/COPY pairs ({', '.join(formats)}; JSON and NDJSON in the first {json_pairs})",
                  flush=True)
            for fmt in formats:
                one_export(fmt)
            run_copy(connection, sql)
            for fmt in formats:
                runs[fmt]["export"].clear()
            load_before = os.getloadavg()[0]
            for pair in range(max(pairs, json_pairs)):
                for fmt in [f for f in formats if pair < (pairs if f == "csv" else json_pairs)]:
                    if pair % 2 == 0:
                        export_rps, copy_rps = one_export(fmt), one_copy(fmt)
                    else:
                        copy_rps, export_rps = one_copy(fmt), one_export(fmt)
                    runs[fmt]["ratios"].append(export_rps / copy_rps)
                    print(f"  pair {pair + 1:2d} {fmt:<6} ({'export-COPY' if pair % 2 == 0 else 'COPY-export'}): "
                          f"export {export_rps:>10,.0f} rows/s  COPY {copy_rps:>10,.0f} rows/s  = "
                          f"{runs[fmt]['ratios'][-1]:.3f}", flush=True)
            load_after = os.getloadavg()[0]
        after_hwm = hwm_mib(pids)
        if failures:
            raise BenchError(f"{len(failures)} exports failed at {size:,} rows: {failures[:3]}")
        alive = server.process.poll() is None and server.worker_pids() == pids
    finally:
        connection.close()

    return {
        "size": size, "pairs": pairs, "load_average_1min": (load_before, load_after),
        "formats": {fmt: _format_summary(item) for fmt, item in runs.items() if item["ratios"]},
        "memory_mib": {
            "start_hwm": max(start_hwm.values()), "hwm": max(after_hwm.values()),
            "sampled_rss": max(sampler.peak_kib.values()) / 1024, "per_worker_hwm": after_hwm,
        },
        "workers_unchanged": alive,
    }


def _format_summary(item: dict) -> dict:
    exports, copies = item["export"], item["copy"]
    return {
        "pairs": len(item["ratios"]),
        "ratio": summarise([r for r in item["ratios"] if r == r]),
        "export_rows_per_s": summarise([r.rows / r.seconds for r in exports]),
        "copy_rows_per_s": summarise([rows / seconds for rows, _, seconds in copies]),
        "export_mb_per_s": statistics.median(r.bytes / r.seconds / 1e6 for r in exports),
        "copy_mb_per_s": statistics.median(b / s / 1e6 for _, b, s in copies),
        "export_bytes": exports[-1].bytes, "copy_bytes": copies[-1][1],
    }


def report(args, results: list[dict], disconnects: list[dict]) -> dict:
    print()
    print(f"Exports (GET {EXPORT_PATH.format(fmt='<format>')}) vs COPY of the CSV columns, gunicorn 2 sync workers, "
          f"PostgreSQL on loopback, {os.cpu_count()} CPUs")
    header = (f"{'rows':>10} {'format':>6} {'pairs':>5} {'export rows/s':>13} {'COPY rows/s':>12} {'ratio median':>12} "
              f"{'IQR':>13} {'min-max':>13} {'MB/s':>6} {'peak RSS MiB':>12} {'sampled':>8} {'load':>9}")
    print(header)
    print("-" * len(header))
    for item in results:
        memory = item["memory_mib"]
        for fmt, summary in item["formats"].items():
            ratio = summary["ratio"]
            print(f"{item['size']:>10,} {fmt:>6} {summary['pairs']:>5} {summary['export_rows_per_s']['median']:>13,.0f} "
                  f"{summary['copy_rows_per_s']['median']:>12,.0f} {ratio['median']:>12.3f} "
                  f"{ratio['q1']:>6.3f}-{ratio['q3']:<6.3f} {ratio['min']:>6.3f}-{ratio['max']:<6.3f} "
                  f"{summary['export_mb_per_s']:>6.1f} {memory['hwm']:>12.1f} {memory['sampled_rss']:>8.1f} "
                  f"{item['load_average_1min'][0]:>4.1f}-{item['load_average_1min'][1]:<4.1f}")
    print(f"ratio = export rows/s / COPY rows/s of the same pair (targets: CSV >= {TARGET_RATIO:.2f}, JSON and NDJSON "
          f">= {TARGET_JSON_RATIO:.2f}); rows/s are medians.")
    print("peak RSS = largest VmHWM of the two workers after all the runs (fresh workers for every size); "
          "sampled = largest VmRSS seen every 20 ms.")
    for item in results:
        memory = item["memory_mib"]
        sizes = "; ".join(f"{fmt} {s['export_bytes'] / 1e6:,.1f} MB" for fmt, s in item["formats"].items())
        print(f"  {item['size']:,} rows: workers' VmHWM {memory['start_hwm']:.1f} MiB after start, "
              f"{memory['hwm']:.1f} after the runs; {sizes}; COPY "
              f"{item['formats']['csv']['copy_bytes'] / 1e6:,.1f} MB"
              + ("" if item["workers_unchanged"] else "; a WORKER WAS REPLACED during the runs"))
    smallest, largest = results[0], results[-1]
    growth = largest["memory_mib"]["hwm"] - smallest["memory_mib"]["hwm"]
    worst = {fmt: min(item["formats"][fmt]["ratio"]["median"] for item in results)
             for fmt in FORMATS if all(fmt in item["formats"] for item in results)}
    ok_ratio = worst["csv"] >= TARGET_RATIO
    ok_json = all(worst[fmt] >= TARGET_JSON_RATIO for fmt in worst if fmt != "csv")
    ok_memory = growth <= TARGET_MEMORY_MB
    print(f"Targets: CSV ratio >= {TARGET_RATIO:.2f}: {'met' if ok_ratio else 'NOT MET'} (lowest median "
          f"{worst['csv']:.3f}); JSON/NDJSON ratio >= {TARGET_JSON_RATIO:.2f}: {'met' if ok_json else 'NOT MET'} "
          f"({', '.join(f'{fmt} {value:.3f}' for fmt, value in worst.items() if fmt != 'csv') or 'not measured'}); "
          f"peak RSS {largest['size']:,} rows - {smallest['size']:,} rows = {growth:+.1f} MiB "
          f"<= {TARGET_MEMORY_MB} MB: {'met' if ok_memory else 'NOT MET'}")
    released = True
    for item in disconnects:
        if item["released_after_s"] is None:
            released = False
            print(f"Disconnect ({item['format']}): STILL in a transaction 5 s after the client closed: "
                  f"{item['left_in_transaction']}")
        else:
            during = ", ".join(item["in_transaction_during_download"]) or "none seen"
            print(f"Disconnect ({item['format']}): client closed after {item['read_bytes']:,} bytes (the app's "
                  f"connection then: {during}); none active or idle in transaction {item['released_after_s']:.2f} "
                  "s later")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpus": os.cpu_count(),
        "sizes": results,
        "memory_growth_mib": growth,
        "targets_met": {"ratio": ok_ratio, "json_ratio": ok_json, "memory": ok_memory, "disconnect": released},
        "disconnects": disconnects,
    }


def load_note() -> str:
    return "load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    require_venv_tools("flask", "gunicorn")
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM to this script tears down like Ctrl-C does

    database_url = f"{args.pg_url}/{args.db_name}"
    tmp = Path(tempfile.mkdtemp(prefix="ap_bench_export_"))
    env = app_env(database_url, tmp / "data", secrets.token_urlsafe(48), secrets.token_urlsafe(48),
                  AUDIT_SEAL_INTERVAL="0", AUDIT_EXPORT_MAX_ROWS=str(max(args.sizes) * 2 + 10_000))
    server = Server("export", args.port, env, tmp)
    database_made = False
    started = time.monotonic()
    print(load_note())
    try:
        print(f"* database {args.db_name}: create, migrate, admin and API token", flush=True)
        recreate_database(args.pg_url, args.db_name)
        database_made = True
        flask_cli(env, "db", "upgrade")
        flask_cli(env, "users", "create-admin", "--username", ADMIN[0], "--password", ADMIN[1],
                  "--email", f"{ADMIN[0]}@example.com")
        token = flask_cli(env, "tokens", "create", "--username", ADMIN[0], "--name", "bench export").stdout.split()[0]

        results, disconnects = [], []
        for size in args.sizes:
            top_up(database_url, env, size)
            results.append(measure_size(args, size, server, token, database_url))
        watcher = pg_connect(database_url)
        try:
            for fmt in ("csv", "json"):
                disconnects.append(disconnect_check(args.port, token, fmt, watcher, args.db_name))
        finally:
            watcher.close()
        server.stop()
        data = report(args, results, disconnects)
        print(load_note())
        print(f"(total time {(time.monotonic() - started) / 60:.1f} min)")
        if args.json:
            args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
            print(f"results written to {args.json}")
        return 0 if all(data["targets_met"].values()) else 1
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: tearing down", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the teardown even if asked again
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001 - keep tearing down
            print(f"could not stop gunicorn: {exc}", file=sys.stderr)
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
