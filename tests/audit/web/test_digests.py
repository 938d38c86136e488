"""The signed digests in the API (`/api/v1/audit-logs/digests/`, `/public-key`) and on the Integrity page: admins
list them, newest first, and get the public key that checks them; nobody else does."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import update

from audit_portal.audit.integrity.models import AuditDigest
from audit_portal.audit.integrity.signing import fingerprint
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ...api_helpers import bearer, make_token
from ..chain_support import record_events
from ..digest_support import KeyPair, run_sealer, signature_checks, stored_digests

DIGESTS = "/api/v1/audit-logs/digests/"
PUBLIC_KEY = "/api/v1/audit-logs/digests/public-key"
PAGE = "/admin/audit-logs/integrity"
DIGEST_TABLE = AuditDigest.__table__


@pytest.fixture
def key(tmp_path) -> KeyPair:
    return KeyPair(tmp_path / "keys")


@pytest.fixture
def signed(app, runner, key):
    """Five events, signed in three digests by the sealer; the app publishes the public key."""
    app.config["AUDIT_DIGEST_EVERY_EVENTS"] = 2
    record_events(app, 5)
    assert run_sealer(app, runner, key).exit_code == 0
    app.config["AUDIT_PUBLIC_KEY_FILE"] = str(key.public)
    return key


def test_admins_list_the_digests_and_check_them_with_the_served_public_key(app, client, admin_id, signed):
    headers = bearer(make_token(app, admin_id))

    listed = client.get(DIGESTS, headers=headers)
    served = client.get(PUBLIC_KEY, headers=headers)

    assert listed.status_code == 200 and served.status_code == 200
    page = listed.get_json()["data"]
    ranges = [(d["first_seq"], d["last_seq"]) for d in page["items"]]
    assert page["total"] == 3 and ranges == [(5, 6), (3, 4), (1, 2)]  # the admin's creation and five events
    assert client.get(DIGESTS + "?skip=1&limit=1", headers=headers).get_json()["data"]["items"][0]["last_seq"] == 4
    key = served.get_json()["data"]
    public = serialization.load_pem_public_key(key["pem"].encode())
    assert key["fingerprint"] == fingerprint(public) == fingerprint(signed.public_key())
    for digest in page["items"]:
        assert signature_checks(public, digest["body"], digest["signature"])
        assert digest["key_fingerprint"] == key["fingerprint"] and digest["count"] == digest["last_seq"] - \
            digest["first_seq"] + 1 and "from" in digest and "head" in digest


def test_the_public_key_is_a_404_with_a_reason_when_none_is_configured(app, client, admin_id):
    response = client.get(PUBLIC_KEY, headers=bearer(make_token(app, admin_id)))

    assert response.status_code == 404
    assert "AUDIT_PUBLIC_KEY_FILE" in response.get_json()["message"]
    assert client.get(DIGESTS, headers=bearer(make_token(app, admin_id))).get_json()["data"]["items"] == []


def test_digests_are_for_admins_only(app, client, make_user):
    user_id = make_user("bob")
    for url in (DIGESTS, PUBLIC_KEY):
        assert client.get(url).status_code == 401
        assert client.get(url, headers=bearer(make_token(app, user_id))).status_code == 403


def test_the_integrity_page_shows_the_key_the_newest_digests_and_that_a_sealer_signs(app, admin_client, signed):
    page = html.unescape(admin_client.get(PAGE).get_data(as_text=True))

    assert fingerprint(signed.public_key()) in page
    assert signed.public.read_text().strip().splitlines()[1] in page  # the PEM itself
    assert "A sealer is signing digests." in page
    for digest in stored_digests(app):
        assert f"{digest.first_seq} to {digest.last_seq} ({digest.last_seq - digest.first_seq + 1})" in page


def test_the_integrity_page_says_when_no_sealer_signs(admin_client):
    page = html.unescape(admin_client.get(PAGE).get_data(as_text=True))

    assert "No digest has been signed" in page and "No public key configured" in page


def test_the_integrity_page_says_when_the_sealer_stopped_signing(app, admin_client, signed):
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(update(DIGEST_TABLE).values(created_at=utcnow() - timedelta(hours=3)))

    page = html.unescape(admin_client.get(PAGE).get_data(as_text=True))

    assert "Stale" in page and "is the sealer running?" in page
    assert "A sealer is signing digests." not in page


def test_a_public_key_file_that_does_not_parse_is_an_error_on_the_page_and_in_the_api(app, admin_client, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    app.config["AUDIT_PUBLIC_KEY_FILE"] = str(bad)

    page = html.unescape(admin_client.get(PAGE).get_data(as_text=True))
    answer = admin_client.get(PUBLIC_KEY)

    assert "AUDIT_PUBLIC_KEY_FILE cannot be read" in page and "holds no PEM public key" in page
    assert answer.status_code == 500 and "AUDIT_PUBLIC_KEY_FILE cannot be read" in answer.get_json()["message"]
