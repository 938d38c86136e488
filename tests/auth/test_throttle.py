import pytest

from tests.conftest import PASSWORD, csrf_token


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATELIMIT_ENABLED": True, "LOGIN_LIMIT_PER_USERNAME": "3 per minute",
            "LOGIN_LIMIT_PER_IP": "6 per minute"}


def _attempt(client, username, password="wrong-password-1", ip="198.51.100.7"):
    client.environ_base["REMOTE_ADDR"] = ip
    token = csrf_token(client)
    return client.post("/auth/login", data={"username": username, "password": password, "csrf_token": token})


def test_failed_logins_per_username_get_429_with_retry_after(client, admin_id, audit_rows):
    for _ in range(3):
        assert _attempt(client, "admin").status_code == 401
    throttled = _attempt(client, "admin", password=PASSWORD)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert b"Too Many Requests" in throttled.data
    [event] = audit_rows(action_type="LOGIN_THROTTLED")
    assert event.event_metadata["attempted_username"] == "admin" and event.status == "FAILURE"


def test_other_users_and_successful_logins_are_not_slowed(client, make_user, admin_id):
    make_user("bob")
    for _ in range(3):
        _attempt(client, "admin")
    assert _attempt(client, "bob", password=PASSWORD).status_code == 302
    client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/auth/password")})
    for _ in range(5):
        assert _attempt(client, "bob", password=PASSWORD, ip="198.51.100.8").status_code == 302
        client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/auth/password")})


def test_per_ip_limit_across_usernames(client):
    for i in range(6):
        assert _attempt(client, f"guess{i}").status_code == 401
    assert _attempt(client, "someone-else").status_code == 429
    assert _attempt(client, "someone-else", ip="198.51.100.99").status_code == 401


def test_limits_are_shared_through_redis(app_config, monkeypatch):
    """Several workers share one limit when RATELIMIT_STORAGE_URI points at Redis."""
    import redis

    from audit_portal import create_app

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    import uuid

    config = {**app_config, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/15",
              "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    first, second = create_app(config), create_app(config)
    from audit_portal.extensions import db
    from audit_portal.users import services

    with first.app_context():
        db.create_all()
        services.ensure_default_roles()
        db.session.commit()
    a, b = first.test_client(), second.test_client()
    for _ in range(3):
        assert _attempt(a, "ghost").status_code == 401
    assert _attempt(b, "ghost").status_code == 429
    for app in (first, second):
        app.extensions["audit_writer"].close()



def test_an_unreachable_store_fails_no_login_and_the_limits_hold_per_process(app_config, monkeypatch, caplog):
    """Redis down (nothing listens on port 1): every login still gets its answer, and each process counts the
    failures in memory until the store answers again."""
    from audit_portal import create_app
    from audit_portal.extensions import db, limiter
    from audit_portal.users import services

    # Flask-Limiter remembers a dead store on its one Limiter, across apps: put that back for the tests that follow.
    monkeypatch.setattr(limiter, "_storage_dead", False)
    app = create_app({**app_config, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0"})
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.drop_all()  # the tables an earlier test of this worker left
        db.create_all()
        services.ensure_default_roles()
        services.create_user(None, username="bob", email="bob@example.com", password=PASSWORD, role="user")
        db.session.commit()
    try:
        client = app.test_client()
        assert [_attempt(client, "admin").status_code for _ in range(4)] == [401, 401, 401, 429]
        assert "falling back to in-memory storage" in caplog.text
        assert _attempt(client, "bob", password=PASSWORD).status_code == 302
    finally:
        app.extensions["audit_writer"].close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
