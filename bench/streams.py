#!/usr/bin/env python3
"""How fast stream destinations drain a backlog: events per second to a local rsyslog and to a local webhook
receiver, from a backlog of sealed events (issue 16's targets: 20,000 events/s to syslog, 10,000 to a webhook).

Run by hand (not in CI), from the repository root, with the project's virtualenv:

    .venv/bin/python bench/streams.py                 # 100,000 events, 3 rounds per target, a few minutes
    .venv/bin/python bench/streams.py --events 20000 --rounds 1   # smoke run

It creates a throwaway PostgreSQL database (``--db-name``, dropped at the end), migrates it, seeds ``--events``
events with ``flask demo seed`` and seals them with ``flask audit verify``. Then, round by round and alternating
which target goes first, it adds a destination with ``start=beginning`` (json format) and runs the dispatcher in
this process until the destination's lag is 0, timing it. The receivers run in processes of their own: rsyslog
(Debian's package, as the tests run it: ``rsyslogd -n`` on a loopback port writing to a file) and a small HTTP
server that reads each batch and answers 200. It prints the events/s of each round and the median per target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from multiprocessing import Process
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import app_env, drop_database, flask_cli, recreate_database  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Events/s from a backlog to rsyslog and to a webhook receiver.")
    parser.add_argument("--events", type=int, default=100_000, help="backlog size (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1000, help="STREAM_BATCH_SIZE (default: %(default)s)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="ap_bench_streams")
    return parser.parse_args(argv)


def _webhook_server(port: int) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main(argv=None) -> int:
    args = parse_args(argv)
    url = f"{args.pg_url}/{args.db_name}"
    recreate_database(args.pg_url, args.db_name)
    data_dir = Path(tempfile.mkdtemp(prefix="ap_bench_streams_"))
    try:
        env = app_env(url, data_dir, "x" * 48, "y" * 48)
        flask_cli(env, "db", "upgrade")
        flask_cli(env, "users", "create-admin", "--username", "bench_admin", "--password", "bench-admin-password-1",
                  "--email", "bench_admin@example.com")
        print(f"* seeding and sealing {args.events:,} events", flush=True)
        flask_cli(env, "demo", "seed", "--count", str(args.events), "--yes")
        flask_cli(env, "audit", "verify")
        results = measure(args, url, data_dir)
    finally:
        drop_database(args.pg_url, args.db_name)
    print()
    for target, rates in results.items():
        print(f"{target:<8} median {statistics.median(rates):>9,.0f} events/s   rounds: "
              + ", ".join(f"{rate:,.0f}" for rate in rates))
    return 0


def measure(args, url: str, data_dir: Path) -> dict[str, list[float]]:
    from audit_portal import create_app
    from audit_portal.audit.streams import service
    from audit_portal.audit.streams.dispatcher import lag
    from audit_portal.audit.streams.runner import Dispatcher
    from audit_portal.extensions import db
    from tests.audit.streams.receivers import Rsyslog, free_port

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "x" * 48, "AUDIT_HMAC_KEY": "y" * 48, "APP_ENV": "production",
                      "AUDIT_SEAL_INTERVAL": 0, "AUDIT_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING",
                      "STREAM_DISPATCH_IN_APP": False, "STREAM_BATCH_SIZE": args.batch})
    rsyslog = Rsyslog(data_dir / "rsyslog")
    rsyslog.start()
    port = free_port()
    webhook = Process(target=_webhook_server, args=(port,), daemon=True)
    webhook.start()
    targets = {"syslog": {"kind": "syslog", "url": rsyslog.url},
               "webhook": {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook"}}
    results: dict[str, list[float]] = {name: [] for name in targets}
    try:
        time.sleep(0.5)
        for round_number in range(args.rounds):
            order = list(targets) if round_number % 2 == 0 else list(reversed(targets))
            for name in order:
                with app.app_context():
                    destination, _ = service.create_destination(None, {
                        "name": f"{name}-{round_number}", "format": "json", "start": "beginning", **targets[name]})
                    db.session.commit()
                    destination_id = destination.id
                    db.session.remove()
                dispatcher = Dispatcher(app)
                started = time.perf_counter()
                delivered = 0
                try:
                    while True:
                        sent = dispatcher.round()
                        delivered += sent
                        if not sent:
                            with app.app_context():
                                behind = lag(db.session.get(service.StreamDestination, destination_id))[0]
                                db.session.remove()
                            if behind == 0:
                                break
                finally:
                    dispatcher.close()
                seconds = time.perf_counter() - started
                rate = delivered / seconds
                results[name].append(rate)
                print(f"  round {round_number + 1} {name:<8} {delivered:,} events in {seconds:.1f} s: "
                      f"{rate:,.0f} events/s", flush=True)
                with app.app_context():
                    service.delete_destination(None, db.session.get(service.StreamDestination, destination_id))
                    db.session.commit()
                    db.session.remove()
    finally:
        rsyslog.stop()
        webhook.terminate()
    return results


if __name__ == "__main__":
    sys.exit(main())
