import pytest

from audit_portal import create_app
from audit_portal.config import ConfigError


def test_testing_config(app):
    assert app.testing
    assert app.config["APP_ENV"] == "testing"


def test_default_database_is_sqlite_in_instance_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app({"APP_ENV": "development", "AUDIT_DATA_DIR": str(tmp_path)})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{app.instance_path}/audit_portal.db"


def test_environment_overrides_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_EXPORT_MAX_ROWS", "1234")
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "true")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    app = create_app({"APP_ENV": "development"})
    assert app.config["AUDIT_EXPORT_MAX_ROWS"] == 1234
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/x.db"


def test_bad_setting_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AUDIT_EXPORT_MAX_ROWS", "lots")
    with pytest.raises(ConfigError, match="AUDIT_EXPORT_MAX_ROWS: expected an integer"):
        create_app({"APP_ENV": "development"})


def test_production_refuses_to_start_without_secrets(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("AUDIT_HMAC_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        create_app({"APP_ENV": "production"})
    assert "SECRET_KEY" in str(info.value) and "AUDIT_HMAC_KEY" in str(info.value)
    assert "secrets.token_urlsafe" in str(info.value)


def test_production_starts_with_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("AUDIT_HMAC_KEY", "k" * 40)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/p.db")
    app = create_app({"APP_ENV": "production"})
    assert app.config["SECRET_KEY"] == "s" * 40


def test_unknown_app_env(monkeypatch):
    with pytest.raises(ConfigError, match="APP_ENV must be one of"):
        create_app({"APP_ENV": "staging-typo"})


def test_postgres_urls_use_psycopg2():
    from audit_portal.database import normalise_database_url

    assert normalise_database_url("postgres://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert normalise_database_url("postgresql://u@h/d") == "postgresql+psycopg2://u@h/d"
