"""Multiprocess mode under gunicorn (gunicorn.conf.py): two sync workers each count what they serve and write, and
one scrape, answered by either, adds both up; figures an earlier server left behind are wiped at start."""

from __future__ import annotations

import os
import runpy
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.live_server import ROOT, _stop, _wait_until_healthy, spawn_gunicorn

from .scrape import parse, value

FAILED_REQUEST = {"action_type": "REQUEST", "status": "FAILURE"}


def _post_nowhere(url: str) -> None:
    try:
        urllib.request.urlopen(urllib.request.Request(f"{url}/no-such-page", data=b"x=1"), timeout=20)  # noqa: S310
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    else:
        raise AssertionError("expected a 404")


def _scrape(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/metrics", timeout=20) as response:  # noqa: S310 - our own server
        return parse(response.read().decode())


def _per_worker(directory, tmp_path) -> list[float]:
    """Each worker's own count of failed requests written, read from its file alone."""
    counts = []
    for index, path in enumerate(sorted(directory.glob("counter_*.db"))):
        alone = tmp_path / f"worker-{index}"
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts.append(registry.get_sample_value("audit_events_written_total", FAILED_REQUEST) or 0.0)
    return counts


def test_two_workers_add_up_in_one_scrape(live_app, tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by an earlier server")
    env = {**live_app.env, "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(directory),
           "AUDIT_WRITE_DELAY_MS": "0"}
    log_path = tmp_path / "gunicorn.log"
    proc, url = spawn_gunicorn(env, log_path, "--workers=2", "--graceful-timeout=5")
    try:
        _wait_until_healthy(url, proc, log_path)
        assert not (directory / "counter_999999.db").exists()
        # A sync worker serves one connection at a time: one that has received half a request waits for the
        # rest, so everything else goes to the other worker until it does.
        held = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=20)
        held.sendall(b"POST /no-such-page HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n")
        time.sleep(0.5)  # let a worker take it
        for _ in range(4):
            _post_nowhere(url)
        held.sendall(b"\r\nx=1")
        answer = b""
        while chunk := held.recv(4096):  # HTTP/1.0: the worker closes the connection after its answer
            answer += chunk
        held.close()
        assert answer.split(b"\r\n", 1)[0].endswith(b"404 NOT FOUND")
        deadline = time.monotonic() + 20
        while (value(samples := _scrape(url), "audit_events_written_total", **FAILED_REQUEST) < 5
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert value(samples, "audit_events_written_total", **FAILED_REQUEST) == 5
        assert value(samples, "http_request_duration_seconds_count", endpoint="<unmatched>", method="POST") == 5
        assert ("audit_seal_lag_events", frozenset()) in samples  # the database part, read once per scrape
        assert sorted(_per_worker(directory, tmp_path)) == [1, 4]
    finally:
        _stop(proc)


def test_the_config_makes_a_metrics_directory_and_forgets_a_gone_workers_live_gauges(monkeypatch):
    # Set (empty: as if unset), so that the test's undo removes what the config file sets.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setenv("METRICS_ENABLED", "false")
    runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert not os.environ["PROMETHEUS_MULTIPROC_DIR"]  # metrics off: no directory
    monkeypatch.setenv("METRICS_ENABLED", "true")
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        assert directory.is_dir()
        for name in ("gauge_livesum_4242.db", "counter_4242.db", "histogram_4242.db", "gauge_livesum_4343.db"):
            (directory / name).write_bytes(b"")
        config["child_exit"](None, SimpleNamespace(pid=4242))
        assert sorted(path.name for path in directory.iterdir()) == [
            "counter_4242.db", "gauge_livesum_4343.db", "histogram_4242.db"]  # its counts stay in the totals
        config["on_starting"](None)
        assert list(directory.iterdir()) == []
        config["on_exit"](None)
        assert not directory.exists()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
