"""Several app servers (issue 20, item 3; docs/scaling.md): two gunicorn servers, each on its own port with its own
AUDIT_DATA_DIR (as on two machines), one PostgreSQL database, one Redis for the login limits. The login throttle is
shared, every event is stored once, and each background job (the sealer, the partition maintenance, the alert
evaluator, a stream destination's dispatcher) is held by exactly one process of the four, which another server's
process takes over when the holder's server is killed. PostgreSQL only (advisory locks); needs Redis on
127.0.0.1:6379."""

from __future__ import annotations

import collections
import http.cookiejar
import json
import os
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from audit_portal.audit.delivery import locks
from audit_portal.database import normalise_database_url
from tests.conftest import CSRF_RE, PASSWORD
from tests.live_server import LiveApp, _stop, _wait_until_healthy, fresh_postgres_database, spawn_gunicorn

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="advisory locks are PostgreSQL's: set "
                                                                       "TEST_DATABASE_URL"),
]

REDIS_URL = "redis://127.0.0.1:6379/15"
WORKERS = 2
EVENTS = 200
#: How long another server may take to hold a dead server's jobs (the shortened intervals below make it ~2 s).
TAKEOVER_LIMIT_S = 15
#: The intervals of the background jobs, shortened so that the test takes seconds, not minutes.
FAST = {"AUDIT_SEAL_INTERVAL": "1", "AUDIT_PARTITION_CHECK_SECONDS": "1", "STREAM_DISPATCH_IN_APP": "true",
        "STREAM_POLL_SECONDS": "0.5", "ALERT_EVAL_IN_APP": "true", "ALERT_EVAL_INTERVAL": "1",
        "AUDIT_WRITE_DELAY_MS": "50"}
HELD_LOCKS = """
    SELECT l.classid::bigint AS namespace, l.objid::bigint AS key, a.application_name
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


@dataclass
class Server:
    name: str
    proc: object
    url: str
    log_path: Path

    def pids(self) -> set[int]:
        """The master and its workers."""
        return {self.proc.pid, *_children(self.proc.pid)}


def _children(parent: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.add(int(stat.parent.name))
    return found


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 302 is the answer we want to see


def login(server: Server, username: str, password: str) -> tuple[int, dict]:
    """One login through the HTML form, in a session of its own: (status, headers)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect)
    page = opener.open(f"{server.url}/auth/login", timeout=20).read().decode()
    form = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrf_token": CSRF_RE.search(page).group(1)}).encode()
    try:
        with opener.open(f"{server.url}/auth/login", data=form, timeout=20) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def post_nowhere(server: Server, path: str) -> int:
    """A POST that answers 404 and is recorded as one REQUEST event (its path names it)."""
    try:
        urllib.request.urlopen(urllib.request.Request(f"{server.url}{path}", data=b"x=1"), timeout=20)  # noqa: S310
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


@pytest.fixture
def redis_prefix():
    """A key prefix of this run's own in Redis database 15 (other runs and test workers use theirs); its keys are
    removed afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"two-servers-{uuid.uuid4().hex}"
    yield prefix
    for key in client.scan_iter(f"*{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def two_servers(redis_prefix, tmp_path):
    """Two servers of WORKERS sync workers each, started together, on one new database; an admin, a user, and a
    file stream destination (written to a directory both servers share, so that its one file shows every
    delivery, whoever made it)."""
    with fresh_postgres_database(os.environ["TEST_DATABASE_URL"], "two_servers") as database_url:
        common = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FLASK_APP", "FLASK_DEBUG"}}
        common.update(APP_ENV="testing", DATABASE_URL=database_url, PYTHONUNBUFFERED="1",
                      SECRET_KEY="two-servers-secret-key-long-enough-00000", RATELIMIT_ENABLED="true",
                      RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=redis_prefix,
                      LOGIN_LIMIT_PER_USERNAME="5 per minute", AUDIT_STREAM_FILE_DIR=str(tmp_path / "streams"),
                      **FAST)
        envs = {name: {**common, "AUDIT_DATA_DIR": str(tmp_path / name / "data")} for name in ("a", "b")}
        setup = LiveApp(url="", env=envs["a"], log_path=tmp_path / "flask.log")
        setup.flask("db", "upgrade")
        setup.flask("users", "create-admin", "--username", "admin", "--password", PASSWORD, "--email", "a@example.com")
        setup.create_user("alice")
        added = setup.flask("streams", "add", "--name", "shared", "--kind", "file", "--path", "events.ndjson",
                            "--start", "beginning")
        destination_id = int(re.search(r"\(id (\d+),", added).group(1))
        servers = []
        try:
            for name, env in envs.items():
                (tmp_path / name).mkdir(exist_ok=True)
                log_path = tmp_path / name / "gunicorn.log"
                proc, url = spawn_gunicorn(env, log_path, f"--workers={WORKERS}", "--graceful-timeout=5",
                                           new_session=True)
                servers.append(Server(name, proc, url, log_path))
            for server in servers:
                _wait_until_healthy(server.url, server.proc, server.log_path)
            engine = create_engine(normalise_database_url(database_url))
            yield servers, engine, destination_id, tmp_path / "streams" / "events.ndjson"
            engine.dispose()
        finally:
            for server in servers:
                _stop(server.proc)


def held_locks(engine) -> dict[tuple[int, int], list[int]]:
    """Each advisory lock of the app's namespaces held in the database -> the pids of the processes holding it."""
    namespaces = {locks.SEALER, locks.STREAM_DESTINATION, locks.ALERT_EVALUATOR, locks.PARTITION_MAINTENANCE}
    held = collections.defaultdict(list)
    with engine.connect() as conn:
        for namespace, key, application in conn.execute(text(HELD_LOCKS)):
            if namespace in namespaces:
                assert application.startswith("audit_portal:"), application
                held[(namespace, key)].append(int(application.split(":", 1)[1]))
    return dict(held)


def test_two_servers_share_the_login_throttle_store_each_event_once_and_run_each_job_in_one_process(two_servers):
    servers, engine, destination_id, stream_file = two_servers
    a, b = servers
    jobs = {(locks.SEALER, 0): "sealer", (locks.PARTITION_MAINTENANCE, 0): "partition maintenance",
            (locks.ALERT_EVALUATOR, 0): "alert evaluator", (locks.STREAM_DESTINATION, destination_id): "stream"}

    # 1. The login throttle: five failures for one name, alternating between the servers; the sixth is refused
    # by either, and so is the right password while the limit lasts. Another name is not slowed.
    assert [login(servers[i % 2], "admin", "wrong-password-1")[0] for i in range(5)] == [401] * 5
    status, headers = login(b, "admin", "wrong-password-1")
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert login(a, "admin", PASSWORD)[0] == 429
    assert login(a, "alice", PASSWORD)[0] == login(b, "alice", PASSWORD)[0] == 302

    # 2. Every event stored once: EVENTS recorded requests, half on each server, eight at a time.
    paths = [f"/two-servers/{i}" for i in range(EVENTS)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: post_nowhere(servers[i % 2], paths[i]), range(EVENTS)))
    assert statuses == [404] * EVENTS

    def stored():
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*), count(DISTINCT event_id), count(DISTINCT path), count(DISTINCT request_id) "
                "FROM audit_logs WHERE path LIKE '/two-servers/%'")).one()

    wait_for(lambda: stored()[0] >= EVENTS, 30, "the requests' events written")
    time.sleep(1)  # a late duplicate would show up by now
    assert tuple(stored()) == (EVENTS, EVENTS, EVENTS, EVENTS)
    with engine.connect() as conn:
        by_action = dict(conn.execute(text("SELECT action_type, count(*) FROM audit_logs WHERE action_type IN "
                                           "('LOGIN_FAILED', 'LOGIN_THROTTLED') GROUP BY action_type")).all())
    assert by_action == {"LOGIN_FAILED": 5, "LOGIN_THROTTLED": 2}

    # The stream's one file: every event delivered once, whichever process held the destination.
    def delivered() -> collections.Counter:
        lines = stream_file.read_text().splitlines() if stream_file.exists() else []
        return collections.Counter(json.loads(line)["event_id"] for line in lines)

    with engine.connect() as conn:
        wanted = set(conn.scalars(text("SELECT event_id FROM audit_logs WHERE path LIKE '/two-servers/%'")))
    wait_for(lambda: wanted <= set(delivered()), 30, "the events streamed")
    assert max(delivered().values()) == 1

    # 3. Each job is held by exactly one process, a worker of one of the servers; both servers' workers are
    # connected (and so compete for the locks), and the holders stay put while every server lives.
    workers = {server.name: server.pids() - {server.proc.pid} for server in servers}
    held = wait_for(lambda: (h := held_locks(engine)).keys() >= jobs.keys() and h, 15, "every job held")
    samples = [held]
    for _ in range(12):
        time.sleep(0.25)
        samples.append(held_locks(engine))
    for job, name in jobs.items():
        holders = {tuple(sample[job]) for sample in samples}
        assert len(holders) == 1, f"{name}: held by {holders} over 3 s"
        [(pid,)] = holders
        assert pid in workers["a"] | workers["b"], f"{name}: held by {pid}, not a worker of either server"
    with engine.connect() as conn:
        connected = {int(name.split(":", 1)[1]) for name in conn.scalars(text(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'audit_portal:%'"))}
    assert connected & workers["a"] and connected & workers["b"]

    # Kill the server whose worker seals, workers and all (SIGKILL: no goodbye, as when a machine is lost): its
    # locks go with its connections, and the other server's workers hold every job within a few seconds.
    [sealer_pid] = held[(locks.SEALER, 0)]
    victim, survivor = (a, b) if sealer_pid in workers["a"] else (b, a)
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    killed = time.monotonic()
    taken_over = {}
    while len(taken_over) < len(jobs) and time.monotonic() - killed < TAKEOVER_LIMIT_S:
        now = held_locks(engine)
        for job in jobs:
            if job not in taken_over and now.get(job) and set(now[job]) <= workers[survivor.name]:
                taken_over[job] = time.monotonic() - killed
        time.sleep(0.1)
    print("takeover after SIGKILL of server", victim.name, {jobs[job]: round(s, 2) for job, s in taken_over.items()})
    assert set(taken_over) == set(jobs), f"not taken over within {TAKEOVER_LIMIT_S} s: " + ", ".join(
        jobs[job] for job in jobs if job not in taken_over)

    # The new sealer seals what the survivor records, and the chain holds every event once.
    assert post_nowhere(survivor, "/two-servers/after") == 404

    def all_sealed():
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT (SELECT count(*) FROM audit_logs) = (SELECT count(*) FROM audit_chain) "
                "AND (SELECT count(*) FROM audit_chain) = (SELECT count(DISTINCT audit_log_id) FROM audit_chain) "
                "AND EXISTS (SELECT 1 FROM audit_logs WHERE path = '/two-servers/after')")).scalar()

    wait_for(all_sealed, 20, "every event sealed once")
