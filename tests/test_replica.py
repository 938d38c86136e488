"""The read replica's settings (audit_portal/replica.py); its behaviour against a real streaming replica is tested in
tests/audit/read/test_replica.py (PostgreSQL only)."""

from __future__ import annotations

import pytest

from audit_portal import ConfigError, create_app


def test_without_a_replica_url_there_is_no_replica(app):
    assert "replica" not in app.extensions


@pytest.mark.parametrize(("primary", "replica"), [
    ("sqlite:///{tmp}/primary.db", "postgresql://postgres@127.0.0.1:1/audit"),
    ("postgresql+psycopg2://postgres@127.0.0.1:1/audit", "sqlite:///{tmp}/replica.db"),
])
def test_a_replica_needs_postgresql_on_both_sides(app_config, tmp_path, primary, replica):
    """A replica URL that cannot be a streaming replica of DATABASE_URL is refused at start, with what to set."""
    config = {**app_config, "SQLALCHEMY_DATABASE_URI": primary.format(tmp=tmp_path),
              "DATABASE_REPLICA_URL": replica.format(tmp=tmp_path)}
    with pytest.raises(ConfigError, match="DATABASE_REPLICA_URL is for PostgreSQL"):
        create_app(config)


def test_the_replica_settings_come_from_the_environment(app_config, monkeypatch):
    monkeypatch.setenv("REPLICA_MAX_LAG_SECONDS", "2.5")
    monkeypatch.setenv("DATABASE_REPLICA_URL", "postgres://postgres@127.0.0.1:1/audit")
    config = {k: v for k, v in app_config.items() if k != "SQLALCHEMY_DATABASE_URI"}
    app = create_app({**config, "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg2://postgres@127.0.0.1:1/audit"})
    replica = app.extensions["replica"]
    assert replica.max_lag == 2.5
    assert replica.engine.url.drivername == "postgresql+psycopg2"  # postgres:// normalised, as DATABASE_URL is
    replica.dispose()
    app.extensions["audit_writer"].close()
