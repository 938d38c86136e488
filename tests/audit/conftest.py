"""Fixtures for the audit core: test-only routes (a probe and routes that raise), and a way to read the
spool and to make the database unreachable for the background writer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from flask import Blueprint, abort, request
from marshmallow import ValidationError
from sqlalchemy import create_engine

from audit_portal.audit.write.spool import SPOOL_NAME
from audit_portal.extensions import csrf

ERRORS = {
    "zero": lambda: 1 / 0,
    "memory": lambda: _raise(MemoryError()),
    "system": lambda: _raise(SystemError("interpreter in trouble")),
    "validation": lambda: _raise(ValidationError({"email": ["Not a valid email address."]})),
    "value": lambda: _raise(ValueError("bad value")),
}


def _raise(exc: BaseException):
    raise exc


def _probe():
    """200 for GET, 201 for anything else; ``?sleep=ms`` makes it slow."""
    if request.args.get("sleep"):
        time.sleep(int(request.args["sleep"]) / 1000)
    return ("ok", 200) if request.method == "GET" else ("created", 201)


def _boom(kind: str):
    if kind == "notfound":
        abort(404)
    if kind == "secret":
        # An exception message that carries a secret from the request, as careless code might.
        raise ValueError(f"could not process payload password={request.form.get('password', '')}")
    return ERRORS[kind]()


def make_test_blueprint() -> Blueprint:
    bp = Blueprint("audit_test", __name__)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    bp.add_url_rule("/_test/probe", "probe", _probe, methods=methods)
    bp.add_url_rule("/_test/boom/<kind>", "boom", _boom, methods=["GET", "POST"])
    bp.add_url_rule("/api/v1/_test/boom/<kind>", "api_boom", _boom, methods=["GET", "POST"])
    csrf.exempt(bp)
    return bp


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "settings(**overrides): app settings for this test, applied before the app is built"
    )


@pytest.fixture
def app_config(app_config, request):
    """The root conftest's settings, plus those of the test's ``@pytest.mark.settings(...)``."""
    for marker in reversed(list(request.node.iter_markers("settings"))):
        app_config.update(marker.kwargs)
    return app_config


@pytest.fixture
def app(app):
    """The app of the root conftest, plus the test-only routes (added before any request is made)."""
    app.register_blueprint(make_test_blueprint())
    return app


@pytest.fixture
def writer(app):
    return app.extensions["audit_writer"]


@pytest.fixture
def spooled(app):
    """Return the events waiting in the spool file (in AUDIT_DATA_DIR)."""
    path = app.extensions["audit_writer"].spool.path
    assert path.parent == Path(app.config["AUDIT_DATA_DIR"]) and path.name == SPOOL_NAME

    def read() -> list[dict]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    return read


@pytest.fixture
def database_outage(app, tmp_path):
    """Make the background writer's database unreachable (a real connection error from the driver);
    call the returned function to bring it back."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'no-such-directory' / 'audit.db'}"
    else:
        url = "postgresql+psycopg2://postgres@127.0.0.1:9/unreachable?connect_timeout=2"
    broken = create_engine(url)
    writer = app.extensions["audit_writer"]
    writer._engine = lambda: broken  # shadows the method on this instance only

    def restore():
        writer.__dict__.pop("_engine", None)

    yield restore
    restore()
    broken.dispose()
