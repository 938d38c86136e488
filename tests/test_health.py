"""``GET /healthz``: 200 when the database answers, 503 when it does not; never audited."""

import socket

import pytest

from audit_portal import create_app


def closed_port() -> int:
    """A local TCP port that nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_on(tmp_path):
    """Build an app on a given database URL (nothing is created in it); close its writer afterwards."""
    apps = []

    def make(url):
        app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url,
                          "AUDIT_DATA_DIR": str(tmp_path / "audit-data")})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["audit_writer"].close()


def test_healthz_answers_ok_when_the_database_answers(client, audit_rows):
    for _ in range(3):
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.is_json
        assert response.get_json() == {"status": "ok", "database": "ok"}
    assert audit_rows() == []


def test_healthz_needs_no_login_even_with_a_logged_in_user_around(admin_client, audit_rows):
    before = len(audit_rows())
    assert admin_client.get("/healthz").status_code == 200
    assert len(audit_rows()) == before


UNREACHABLE = {
    "sqlite": lambda: "sqlite:////nonexistent-dir-for-healthz/sub/audit.db",
    "postgresql": lambda: f"postgresql+psycopg2://postgres@127.0.0.1:{closed_port()}/test?connect_timeout=2",
}


@pytest.mark.parametrize("backend", sorted(UNREACHABLE))
def test_healthz_answers_503_when_the_database_is_unreachable(app_on, backend):
    app = app_on(UNREACHABLE[backend]())
    client = app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.is_json
    assert response.get_json() == {"status": "unavailable", "database": "unreachable"}
    # Nothing was recorded (an event for a dead database would have gone to the local spool).
    writer = app.extensions["audit_writer"]
    assert writer.flush()
    assert writer.spool.pending_bytes() == 0


def test_healthz_recovers_without_a_restart(app_on, tmp_path):
    folder = tmp_path / "not-yet"
    app = app_on(f"sqlite:///{folder / 'audit.db'}")
    client = app.test_client()
    assert client.get("/healthz").status_code == 503
    folder.mkdir()  # the database becomes reachable
    assert client.get("/healthz").status_code == 200
