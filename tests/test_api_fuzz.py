"""Property-based fuzzing of the whole JSON API from its own OpenAPI document (schemathesis).

The document is read from the app in-process (WSGI, no server). Each operation is one test: it gets a fresh
app and database holding an admin (whose API token authenticates every call) and a few other users, and
is called with generated valid and invalid input (schemathesis' examples, coverage and fuzzing phases).
Every response must not be a 5xx, must have a documented status code (the catch-all ``default``
response is dropped, so each status must be listed on its operation), content type, headers and body
schema; invalid input must be rejected with a 4xx, an undocumented method with a 405 and its ``Allow``
header, and a request that succeeds must fail without the token or with a wrong one.

Bounded and reproducible: at most ``MAX_EXAMPLES`` generated examples per operation (plus the coverage
phase's fixed boundary cases), a fixed seed, derandomized generation and no example database, so every
run, on any machine and in CI, sends the same requests.

The fuzzer may create, change and delete users. The token owner stays a working admin: the services
refuse to delete, deactivate or suspend one's own account (422), and a PATCH aimed at it (which could
demote it while another admin exists) goes to the other admin instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks as st_checks
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.specs.openapi import checks as oas_checks

from audit_portal import create_app
from audit_portal.extensions import db
from tests.api_helpers import bearer, make_token

MAX_EXAMPLES = 25
SEED = 20260401
#: Users besides the admin (the first an admin too), so that generated ids often name a real user.
OTHER_USERS = 5

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
})

CHECKS = [
    st_checks.not_a_server_error,
    oas_checks.status_code_conformance,
    oas_checks.content_type_conformance,
    oas_checks.response_headers_conformance,
    oas_checks.response_schema_conformance,
    oas_checks.negative_data_rejection,
    oas_checks.missing_required_header,
    oas_checks.unsupported_method,
    oas_checks.allow_header_conformance,
    oas_checks.ignored_auth,
]


def _without_default_responses(context, raw_schema):
    """flask-smorest documents a catch-all ``default`` error response on every operation, which would let
    any status code pass the status-code check: drop it, so every status the API answers must be
    documented explicitly on its operation."""
    for path_item in raw_schema["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("default", None)


def _load_schema():
    """The OpenAPI document as the app serves it, read at collection time (one test per operation) from a
    throwaway app; each test then calls its own ``app`` fixture, with a fresh database."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{Path(tmp) / 'docs.db'}",
                          "AUDIT_DATA_DIR": tmp, "SECRET_KEY": "fuzz-schema-secret-key-long-enough-0000000"})
        schemathesis.hook("before_load_schema")(_without_default_responses)
        try:
            with app.app_context():
                db.create_all()
            return schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=CONFIG)
        finally:
            GLOBAL_HOOK_DISPATCHER.unregister(_without_default_responses)
            app.extensions["audit_writer"].close()
            with app.app_context():
                db.engine.dispose()


schema = _load_schema()


@schema.hook("flatmap_path_parameters")
def _often_an_existing_id(context, path_parameters):
    """A generated integer id, or an id that exists (the users made below, the first audit events), so the
    item operations get past their 404 and run on real rows too."""
    # Only valid ids (the converters document minimum 0): a negative case must stay negative, or the check that
    # invalid input is refused would see its invalid id replaced by a real one.
    ids = {name: value for name, value in (path_parameters or {}).items()
           if name in ("user_id", "log_id") and isinstance(value, int) and not isinstance(value, bool) and value >= 0}
    if not ids:
        return st.just(path_parameters)
    choices = {name: st.one_of(st.just(value), st.integers(1, OTHER_USERS + 1)) for name, value in ids.items()}
    return st.fixed_dictionaries(choices).map(lambda chosen: {**path_parameters, **chosen})


@pytest.fixture
def admin_headers(app, admin_id, make_user):
    for number in range(OTHER_USERS):
        make_user(f"fuzz-user-{number}", role="admin" if number == 0 else "user")
    return bearer(make_token(app, admin_id, "fuzz"))


@schema.parametrize()
# One app (and database) per operation, shared by that operation's examples: on purpose.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_openapi_document(case, app, admin_id, admin_headers):
    if case.method == "PATCH" and str((case.path_parameters or {}).get("user_id")) == str(admin_id):
        # The token owner may demote itself while another admin exists; every later call would be a 403.
        case.path_parameters = {**case.path_parameters, "user_id": admin_id + 1}  # the other admin instead
    case.call_and_validate(app=app, headers=admin_headers, checks=CHECKS)
