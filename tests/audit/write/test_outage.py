"""No loss when the database fails: real PostgreSQL behind a TCP proxy that the test cuts mid-load.

The app talks to PostgreSQL through ``tests.tcp_proxy.TcpProxy``. Under a bounded load of admin pages, API
calls, form posts, plain posts and health checks, the proxy closes every open connection and refuses new
ones; later it lets them through again. While the database is away, pages that need it answer a clear 503
(HTML page or JSON envelope; never a 500), ``/healthz`` answers 503, pages that do not need it keep working,
and the request and error events that cannot be written go to the spool in AUDIT_DATA_DIR. Once the
database is back the spool is replayed, and every event the requests produced is stored exactly once.

The shared PostgreSQL cluster is never stopped: only the proxy's connections are cut.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.write.context import REQUEST_ID_HEADER
from tests.conftest import PASSWORD, csrf_token
from tests.tcp_proxy import BLACKHOLE, TcpProxy


def postgres_only(test):
    """Runs on PostgreSQL only: the outage is a real PostgreSQL connection cut by the proxy."""
    test = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                              reason="cuts a real PostgreSQL connection with a TCP proxy: set TEST_DATABASE_URL")(test)
    return pytest.mark.postgres_only(test)


REQUESTS = 200
CUT_AT, RESTORE_AT = 70, 140
THREADS = 4
#: What each kind of request is, and the answers it may give with the database up and down.
KINDS = ["viewer", "users", "api", "login", "edit", "probe", "healthz", "errors"]


@pytest.fixture
def proxy(database_url):
    url = make_url(database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def app_config(app_config, proxy, database_url):
    """The app under test reaches this test's PostgreSQL database only through the proxy."""
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    app_config["SQLALCHEMY_DATABASE_URI"] = url.update_query_dict({"connect_timeout": "2"}).render_as_string(
        hide_password=False)
    return app_config


@pytest.fixture
def direct_engine(database_url):
    """A connection to the same database that bypasses the proxy: to count what was stored."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@dataclass
class Outcome:
    index: int
    kind: str
    phase: str  # "up", "down", "back", or "edge" (the proxy was cut or restored while it ran)
    status: int
    request_id: str | None
    content_type: str
    body: str = field(repr=False)
    retry_after: str | None = None


class Clients:
    """One logged-in admin and one anonymous visitor, each with a CSRF token of its session."""

    def __init__(self, app):
        self.admin = app.test_client()
        response = self.admin.post("/auth/login", data={"username": "admin", "password": PASSWORD,
                                                        "csrf_token": csrf_token(self.admin)})
        assert response.status_code == 302
        self.admin_token = csrf_token(self.admin, "/auth/password")
        self.anonymous = app.test_client()
        self.anonymous_token = csrf_token(self.anonymous)

    def send(self, index: int, kind: str, bob_id: int):
        if kind == "viewer":
            return self.admin.get("/admin/audit-logs/?limit=10")
        if kind == "users":
            return self.admin.get("/admin/users/")
        if kind == "api":
            return self.admin.get("/api/v1/audit-logs/?limit=5")
        if kind == "login":
            return self.anonymous.post("/auth/login", data={"username": "admin", "password": f"wrong-{index}",
                                                            "csrf_token": self.anonymous_token})
        if kind == "edit":
            return self.admin.post(f"/admin/users/{bob_id}/edit", data={
                "username": "bob", "email": "bob@example.com", "full_name": f"Bob {index}", "role": "user",
                "csrf_token": self.admin_token})
        if kind == "probe":
            return self.anonymous.post(f"/_test/probe?n={index}")
        if kind == "healthz":
            return self.anonymous.get("/healthz")
        return self.admin.get("/admin/audit-logs/errors")


class Load:
    """REQUESTS requests over THREADS threads (each with clients of its own: a test client's cookie jar is
    not shared across threads). The thread that takes request CUT_AT cuts the proxy first; the one that
    takes RESTORE_AT restores it. Each outcome is labelled with the phase it ran in from start to end."""

    def __init__(self, app, proxy, bob_id: int):
        self.app, self.proxy, self.bob_id = app, proxy, bob_id
        self.writer = app.extensions["audit_writer"]
        self.phase = "up"
        self.lock = threading.Lock()
        self.next_index = 0
        self.switched = {CUT_AT: threading.Event(), RESTORE_AT: threading.Event()}
        self.outcomes: list[Outcome] = []
        self.spooled_before_restore = 0
        self.spooled_request_ids: Counter = Counter()

    def _take(self) -> int | None:
        with self.lock:
            index, self.next_index = self.next_index, self.next_index + 1
        # Requests after a switch wait for it to finish; those before it may still be running while it
        # happens (the database is cut under load, with requests in flight).
        if index > CUT_AT:
            assert self.switched[CUT_AT].wait(timeout=60)
        if index > RESTORE_AT:
            assert self.switched[RESTORE_AT].wait(timeout=60)
        return index if index < REQUESTS else None

    def _switch(self, index: int) -> None:
        if index == CUT_AT:
            self.phase = "cutting"
            self.proxy.cut()
            self.phase = "down"
            self.switched[CUT_AT].set()
        elif index == RESTORE_AT:
            self.phase = "restoring"
            assert self.writer.flush(timeout=30)
            self.spooled_before_restore = self.writer.spool.pending_bytes()
            with open(self.writer.spool.path, encoding="utf-8") as spool:
                self.spooled_request_ids = Counter(json.loads(line)["request_id"] for line in spool if line.strip())
            self.proxy.restore()
            self.phase = "back"
            self.switched[RESTORE_AT].set()

    def _work(self, clients: Clients) -> None:
        while (index := self._take()) is not None:
            self._switch(index)
            kind = KINDS[index % len(KINDS)]
            before = self.phase
            try:
                response = clients.send(index, kind, self.bob_id)
            except Exception as exc:  # noqa: BLE001 - an error that escaped the app: what a server turns into a 500
                response = None
                error = "".join(traceback.format_exception(exc))
            after = self.phase
            phase = before if before == after and before in ("up", "down", "back") else "edge"
            if response is None:
                outcome = Outcome(index, kind, phase, 500, None, "escaped", error)
            else:
                outcome = Outcome(index, kind, phase, response.status_code, response.headers.get(REQUEST_ID_HEADER),
                                  response.mimetype, response.get_data(as_text=True),
                                  response.headers.get("Retry-After"))
            with self.lock:
                self.outcomes.append(outcome)

    def run(self) -> list[Outcome]:
        clients = [Clients(self.app) for _ in range(THREADS)]
        threads = [threading.Thread(target=self._work, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert len(self.outcomes) == REQUESTS
        return sorted(self.outcomes, key=lambda o: o.index)


#: Answers with the database up, per kind.
UP = {"viewer": 200, "users": 200, "api": 200, "login": 401, "edit": 302, "probe": 201, "healthz": 200,
      "errors": 200}
#: Answers with the database down: 503 wherever the database is needed; the probe does not need it.
DOWN = {**{kind: 503 for kind in UP}, "probe": 201}


def expected_events(outcome: Outcome) -> dict[str, tuple[int, int]]:
    """The audit events this request must have left (action type -> (at least, at most)), from its answer."""
    if outcome.kind == "healthz":
        return {}  # never audited
    events = {"REQUEST": (1, 1)}
    if outcome.status == 503:
        events["EXCEPTION_RAISED"] = (1, 1)
        if outcome.phase == "edge":
            # Cut half-way: a failed login may have been recorded before the request's own commit failed;
            # an edit may have been committed by the server (and, in the same transaction, its UPDATE
            # event) before the acknowledgement was lost.
            optional = {"login": "LOGIN_FAILED", "edit": "UPDATE"}.get(outcome.kind)
            if optional:
                events[optional] = (0, 1)
    elif outcome.kind == "login":
        events["LOGIN_FAILED"] = (1, 1)
    elif outcome.kind == "edit":
        events["UPDATE"] = (1, 1)  # in the same transaction as the change
    return events


@postgres_only
def test_a_database_outage_under_load_loses_no_event_and_duplicates_none(app, make_user, proxy, direct_engine,
                                                                        capsys):
    make_user("admin", role="admin")
    bob_id = make_user("bob")
    writer = app.extensions["audit_writer"]
    submitted: list[str] = []
    real_submit = writer.submit

    def spy(event):
        submitted.append(event["event_id"])
        real_submit(event)

    writer.submit = spy
    load = Load(app, proxy, bob_id)
    started = time.monotonic()
    outcomes = load.run()
    elapsed = time.monotonic() - started

    # -- every answer was a normal one ----------------------------------------------------------
    by_phase = Counter((o.phase, o.status) for o in outcomes)
    for o in outcomes:
        allowed = {"up": {UP[o.kind]}, "back": {UP[o.kind]}, "down": {DOWN[o.kind]},
                   "edge": {UP[o.kind], DOWN[o.kind]}}[o.phase]
        assert o.status in allowed, (o.index, o.kind, o.phase, o.status, o.body[-6000:])
        if o.status == 503:
            if o.kind in ("api", "healthz"):
                assert o.content_type == "application/json", o
                body = json.loads(o.body)
                if o.kind == "api":
                    assert body["success"] is False and body["code"] == 503
                    assert "database is unavailable" in body["message"]
                else:
                    assert body == {"status": "unavailable", "database": "unreachable"}
            else:
                assert o.content_type == "text/html" and "The database is unavailable" in o.body, o
                assert "Traceback" not in o.body
            if o.kind != "healthz":
                assert o.retry_after == "5", o
    assert sum(1 for o in outcomes if o.phase == "down" and o.status == 503) >= 40
    assert sum(1 for o in outcomes if o.phase == "back") >= 40  # service resumed without a restart

    # -- while it was down, the events went to the spool; once back, the spool was replayed --------
    assert load.spooled_before_restore > 0, "nothing was spooled during the outage"
    for o in outcomes:  # the events of requests answered during the outage waited in the spool
        if o.phase == "down" and o.kind != "healthz":
            assert load.spooled_request_ids[o.request_id] == (2 if o.status == 503 else 1), o
    assert writer.flush(timeout=30)
    writer.replay_spool()
    assert writer.spool.pending_bytes() == 0

    # -- every expected event is stored exactly once ----------------------------------------------
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for o in outcomes:
        if o.kind != "healthz":
            assert o.request_id, o
        for action, bounds in expected_events(o).items():
            expected[(o.request_id, action)] = bounds
    table = AuditLog.__table__
    with direct_engine.connect() as conn:
        rows = conn.execute(select(table.c.request_id, table.c.action_type)
                            .where(table.c.request_id.in_({rid for rid, _ in expected}))).all()
        stored_event_ids = set(conn.execute(select(table.c.event_id)).scalars())
    stored = Counter((r.request_id, r.action_type) for r in rows)
    required = sum(low for low, _ in expected.values())
    in_doubt = sum(min(stored[key], 1) for key, (low, _) in expected.items() if low == 0)
    sent_count = required + in_doubt  # events the requests produced (in-doubt commits that did land count)
    stored_count = sum(min(stored[key], high) for key, (_, high) in expected.items())
    duplicated = sum(max(0, stored[key] - high) for key, (_, high) in expected.items())
    missing = {key: stored[key] for key, (low, _) in expected.items() if stored[key] < low}
    unexpected = {key: n for key, n in stored.items() if key not in expected}
    lost_submitted = [eid for eid in submitted if eid not in stored_event_ids]

    with capsys.disabled():
        print(f"\n[outage] {REQUESTS} requests in {elapsed:.1f}s over {THREADS} threads; "
              f"answers by phase: {dict(sorted(by_phase.items()))}")
        print(f"[outage] spooled during the outage: {sum(load.spooled_request_ids.values())} events, "
              f"{load.spooled_before_restore} bytes; in-doubt commits: {in_doubt}; "
              f"proxy connections forwarded {proxy.accepted}, refused {proxy.refused}")
        print(f"[outage] events sent: {sent_count}, stored: {stored_count}, duplicated: {duplicated}, "
              f"unexpected: {sum(unexpected.values())}; events handed to the writer: {len(submitted)}, "
              f"of which missing: {len(lost_submitted)}")

    assert missing == {}
    assert stored_count == sent_count
    assert duplicated == 0
    assert unexpected == {}
    assert lost_submitted == []


@postgres_only
def test_a_database_that_stops_answering_is_a_503_within_the_connect_timeout(app, app_config, make_user, proxy,
                                                                            monkeypatch):
    """A host that black-holes connections (no refusal, no answer) must not hold requests: the app's default
    PostgreSQL connect timeout turns it into a 503 (here lowered to libpq's minimum, 2 s, to keep it short)."""
    import audit_portal
    from audit_portal import database

    make_user("admin", role="admin")
    monkeypatch.setattr(database, "POSTGRES_CONNECT_TIMEOUT_S", 2)
    url = make_url(app_config["SQLALCHEMY_DATABASE_URI"])
    no_timeout = url.difference_update_query(["connect_timeout"]).render_as_string(hide_password=False)
    app = audit_portal.create_app({**app_config, "SQLALCHEMY_DATABASE_URI": no_timeout})
    try:
        assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] == {"connect_timeout": 2}
        admin = app.test_client()
        assert admin.post("/auth/login", data={"username": "admin", "password": PASSWORD,
                                               "csrf_token": csrf_token(admin)}).status_code == 302
        proxy.cut(BLACKHOLE)
        for path in ("/healthz", "/admin/audit-logs/", "/api/v1/audit-logs/"):
            started = time.monotonic()
            response = admin.get(path)
            assert response.status_code == 503, (path, response.get_data(as_text=True)[:500])
            assert time.monotonic() - started < 5, path
        proxy.restore()
        assert admin.get("/healthz").status_code == 200
        assert admin.get("/admin/audit-logs/").status_code == 200
    finally:
        proxy.restore()
        app.extensions["audit_writer"].close()
        with app.app_context():
            audit_portal.extensions.db.engine.dispose()


def test_postgresql_connections_are_checked_and_bounded_by_default():
    """pool_pre_ping replaces connections that died during an outage; connect_timeout bounds a new one."""
    from audit_portal.database import POSTGRES_CONNECT_TIMEOUT_S, engine_options

    # hide_parameters: error messages (and so error events) never carry a statement's values.
    assert engine_options("postgresql+psycopg2://u@db/app") == {
        "pool_pre_ping": True, "hide_parameters": True, "connect_args": {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}}
    # A timeout in the URL wins.
    assert engine_options("postgresql+psycopg2://u@db/app?connect_timeout=9") == {"pool_pre_ping": True,
                                                                                  "hide_parameters": True}
    assert engine_options("sqlite:///x.db") == {"connect_args": {"timeout": 30}, "hide_parameters": True}
