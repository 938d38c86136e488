"""Signed digests: `flask audit keys generate` makes the key pair, `flask audit sealer` (the one process with the
private key) signs digests of the public chain that anyone with the public key can check, and `flask audit verify`
with AUDIT_PUBLIC_KEY_FILE names an edited digest, a deleted one, a chain changed after it was signed and digests
re-signed with another key. Key rotation hands over from one key to the next."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import delete, select, update

from audit_portal import create_app
from audit_portal.audit.integrity.canonical import GENESIS
from audit_portal.audit.integrity.digests import SealerKeys, sign_due_digests
from audit_portal.audit.integrity.models import AuditPurge
from audit_portal.audit.integrity.seal import seal as seal_chain
from audit_portal.audit.integrity.signing import fingerprint, load_signing_key
from audit_portal.audit.record.enums import ActionType
from audit_portal.config import ConfigError
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ..chain_support import CHAIN, LOGS, count_rows, links, recompute_chain, record_events, tamper
from ..digest_support import DIGESTS, KeyPair, body, run_sealer, signature_checks, stored_digests, verify_with

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def key(tmp_path) -> KeyPair:
    return KeyPair(tmp_path / "key-a")


@pytest.fixture
def other_key(tmp_path) -> KeyPair:
    return KeyPair(tmp_path / "key-b")


def failures(result) -> str:
    return "\n".join(line for line in result.output.splitlines() if line.startswith("  - "))


# -- keys ------------------------------------------------------------------------------------------


def test_keys_generate_writes_a_private_key_for_its_owner_alone_and_a_public_key(runner, tmp_path):
    out = tmp_path / "keys"

    result = runner.invoke(args=["audit", "keys", "generate", "--out", str(out)])

    assert result.exit_code == 0, result.output
    private, public = out / "audit-signing-key.pem", out / "audit-signing-key.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS 8
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    private_key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public_key = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(private_key, Ed25519PrivateKey) and isinstance(public_key, Ed25519PublicKey)
    assert private_key.public_key().public_bytes_raw() == public_key.public_bytes_raw()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert f"Fingerprint: {hashlib.sha256(der).hexdigest()}" in result.output


def test_keys_generate_never_overwrites_a_key(runner, key):
    before = key.private.read_bytes(), key.public.read_bytes()

    result = runner.invoke(args=["audit", "keys", "generate", "--out", str(key.private.parent)])

    assert result.exit_code != 0
    assert "refusing to overwrite" in result.output
    assert (key.private.read_bytes(), key.public.read_bytes()) == before

    key.public.unlink()  # only the private key left: still refused, and nothing is written
    again = runner.invoke(args=["audit", "keys", "generate", "--out", str(key.private.parent)])
    assert again.exit_code != 0 and "already exists" in again.output
    assert not key.public.exists() and key.private.read_bytes() == before[0]


# -- signing and verifying ---------------------------------------------------------------------------


@pytest.mark.settings(AUDIT_DIGEST_EVERY_EVENTS=2)
def test_the_sealer_signs_digests_that_verify_with_the_public_key(app, runner, key):
    record_events(app, 5)

    app.config["AUDIT_PUBLIC_KEY_FILE"] = str(key.public)  # the sealer says when it does not match: here it does
    result = run_sealer(app, runner, key)
    app.config["AUDIT_PUBLIC_KEY_FILE"] = ""

    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    rows = stored_digests(app)
    assert [(r.first_seq, r.last_seq) for r in rows] == [(1, 2), (3, 4), (5, 5)]
    public = key.public_key()
    previous = None
    for row in rows:
        assert signature_checks(public, row.body, row.signature)
        assert body(row)["key_fingerprint"] == fingerprint(public) and body(row)["previous_signature"] == previous
        previous = row.signature
        # The shipped file holds the same signed text.
        shipped = json.loads((Path(app.config["AUDIT_DIGEST_DIR"]) / f"digest-{row.last_seq:012d}.json").read_text())
        assert shipped == {"body": row.body, "signature": row.signature}
    assert count_rows(app, LOGS, LOGS.c.action_type == ActionType.DIGEST_SIGNED.value) == 3

    verified = verify_with(app, runner, key.public)
    assert verified.exit_code == 0, verified.output
    assert "Checked 3 signed digests (links up to 5" in verified.output
    without_key = runner.invoke(args=["audit", "verify"])
    assert without_key.exit_code == 0 and "3 signed digests are stored; set AUDIT_PUBLIC_KEY_FILE" in without_key.output


@pytest.mark.settings(AUDIT_DIGEST_EVERY_EVENTS=3, AUDIT_DIGEST_EVERY_SECONDS=600)
def test_a_digest_is_signed_every_n_links_or_once_the_interval_passed(app, key):
    record_events(app, 4)
    keys = SealerKeys(load_signing_key(key.private))
    with app.app_context():
        seal_chain()
        start = utcnow()  # one clock for the three rounds: a slow machine cannot move the second past the interval
        assert [(b["first_seq"], b["last_seq"]) for b in sign_due_digests(keys, now=start)] == [(1, 3)]
        assert sign_due_digests(keys, now=start + timedelta(seconds=599)) == []  # one link waits, not for long
        late = sign_due_digests(keys, now=start + timedelta(seconds=601))
        assert [(b["first_seq"], b["last_seq"]) for b in late] == [(4, 4)]


@pytest.mark.settings(AUDIT_DIGEST_EVERY_EVENTS=2)
def test_digests_still_verify_after_a_retention_purge(app, runner, key):
    record_events(app, 4, days_ago=400, label="old")
    record_events(app, 3, label="recent")
    assert run_sealer(app, runner, key).exit_code == 0
    purged = runner.invoke(args=["audit", "purge", "--older-than-days", "365", "--yes"])
    assert purged.exit_code == 0 and "Deleted 4 events" in purged.output, purged.output
    assert run_sealer(app, runner, key).exit_code == 0  # the purge's own event, and the next digests

    verified = verify_with(app, runner, key.public)

    assert verified.exit_code == 0, verified.output


@pytest.mark.settings(AUDIT_DIGEST_EVERY_EVENTS=2)
def test_a_digest_carries_the_retention_purges_since_the_one_before(app, key):
    """An auditor learns of every purge from the signed digests, each purge once."""
    keys = SealerKeys(load_signing_key(key.private))
    record_events(app, 2)
    with app.app_context():
        seal_chain()
        db.session.add(AuditPurge(cutoffs={"*": "2026-01-01T00:00:00.000000+00:00"}, holds=[], head_seq=2, count=0))
        db.session.commit()
        purge_id = db.session.scalar(select(AuditPurge.id))
        [first] = sign_due_digests(keys)
    record_events(app, 2)
    with app.app_context():
        seal_chain()
        [second] = sign_due_digests(keys)

    assert [(p["id"], p["head_seq"], p["cutoffs"]) for p in first["purges"]] == [
        (purge_id, 2, {"*": "2026-01-01T00:00:00.000000+00:00"})]
    assert second["purges"] == []


def _reseal_and_resign(app, key: KeyPair) -> None:
    """What an attacker with the database and the web host (the HMAC key, but not the sealer's key) can do: change an
    event, recompute both chains, and sign every digest anew, with the new heads, with a key of their own."""
    recompute_chain(app, app.config["AUDIT_HMAC_KEY"],
                    [update(LOGS).where(LOGS.c.id == 3).values(description="Nothing happened here")])
    hashes = {link.seq: link.public_hash for link in links(app)}
    private = key.private_key()
    previous = None
    statements = []
    for row in stored_digests(app):
        content = body(row)
        content.update(key_fingerprint=fingerprint(private.public_key()), previous_signature=previous,
                       head=hashes[row.last_seq], prev_head=hashes.get(row.first_seq - 1, GENESIS))
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        signature = base64.b64encode(private.sign(text.encode())).decode()
        statements.append(update(DIGESTS).where(DIGESTS.c.id == row.id).values(
            body=text, signature=signature, key_fingerprint=content["key_fingerprint"], head=content["head"]))
        previous = signature
    tamper(app, *statements)


def _edit_body(app, _):
    row = stored_digests(app)[1]
    tamper(app, update(DIGESTS).where(DIGESTS.c.id == row.id).values(body=row.body.replace('"count":2', '"count":3')))


def _remove_middle(app, _):
    tamper(app, delete(DIGESTS).where(DIGESTS.c.id == stored_digests(app)[1].id))


def _remove_newest(app, _):
    tamper(app, delete(DIGESTS).where(DIGESTS.c.id == stored_digests(app)[-1].id))


def _change_chain(app, _):
    tamper(app, update(CHAIN).where(CHAIN.c.seq == 4).values(public_hash="f" * 64))


TAMPERING = {
    "a digest's body edited": (_edit_body, "its signature does not verify"),
    "a digest removed": (_remove_middle, "Links 3 to 4 are in no digest"),
    "the newest digest removed": (_remove_newest, "are not stored (ending at links 6)"),
    "the chain changed after it was signed": (_change_chain, "not the one the digest signed"),
    "the chain re-sealed and the digests re-signed with another key": (_reseal_and_resign,
                                                                      "which is not among the public keys given"),
}


@pytest.mark.parametrize("case", TAMPERING)
@pytest.mark.settings(AUDIT_DIGEST_EVERY_EVENTS=2)
def test_verify_with_the_public_key_names_tampered_digests(app, runner, key, other_key, case):
    record_events(app, 6)
    assert run_sealer(app, runner, key).exit_code == 0
    assert verify_with(app, runner, key.public).exit_code == 0
    change, expected = TAMPERING[case]
    change(app, other_key)

    result = verify_with(app, runner, key.public)

    assert result.exit_code == 1, result.output
    assert expected in failures(result), result.output
    if change is _reseal_and_resign:
        # Consistent among themselves (with the attacker's key they check out): only the key gives them away.
        with_their_key = verify_with(app, runner, other_key.public)
        assert "Digest" not in failures(with_their_key) and "digest" not in failures(with_their_key)


@pytest.mark.settings(AUDIT_DIGEST_EVERY_EVENTS=2)
def test_key_rotation_hands_over_to_the_next_key(app, runner, key, other_key, tmp_path):
    record_events(app, 2)
    first = run_sealer(app, runner, key, next_key=other_key)  # the next digest names the new key ...
    record_events(app, 2)
    second = run_sealer(app, runner, key, next_key=other_key)  # ... which signs from then on, restarts included
    record_events(app, 2)
    third = run_sealer(app, runner, other_key)  # the rotation done: the new key alone

    assert (first.exit_code, second.exit_code, third.exit_code) == (0, 0, 0), first.output + second.output
    rows = stored_digests(app)
    a, b = fingerprint(key.public_key()), fingerprint(other_key.public_key())
    assert [(body(r)["key_fingerprint"], body(r)["next_key_fingerprint"]) for r in rows][:2] == [(a, b), (b, None)]
    assert {body(r)["key_fingerprint"] for r in rows[1:]} == {b}

    old_key_again = run_sealer(app, runner, key)
    assert old_key_again.exit_code != 0 and "leaves key" in old_key_again.output
    assert len(stored_digests(app)) == len(rows)
    app.config["AUDIT_PUBLIC_KEY_FILE"] = str(key.public)
    unpublished = run_sealer(app, runner, other_key)  # signs, but warns that auditors lack its public half
    app.config["AUDIT_PUBLIC_KEY_FILE"] = ""
    assert unpublished.exit_code == 0 and "does not hold the public half" in unpublished.output

    both = tmp_path / "both.pem"
    both.write_text(key.public.read_text() + other_key.public.read_text())
    verified = verify_with(app, runner, both)
    assert verified.exit_code == 0, verified.output
    only_old = verify_with(app, runner, key.public)
    assert only_old.exit_code == 1 and "which is not among the public keys given" in failures(only_old)


# -- bad input ---------------------------------------------------------------------------------------


def test_a_public_key_file_that_does_not_parse_stops_verify_and_changes_nothing(app, runner, tmp_path):
    record_events(app, 2)
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")

    result = verify_with(app, runner, bad)

    assert result.exit_code != 0
    assert "AUDIT_PUBLIC_KEY_FILE" in result.output and "does not parse" in result.output
    assert count_rows(app, CHAIN) == 0  # nothing sealed
    assert count_rows(app, LOGS, LOGS.c.action_type == ActionType.AUDIT_VERIFY.value) == 0  # nothing recorded


def test_the_sealer_refuses_a_key_file_others_can_read(app, runner, key):
    record_events(app, 2)
    key.private.chmod(0o640)

    result = run_sealer(app, runner, key)

    assert result.exit_code != 0
    assert "accessible by its group or others" in result.output and "chmod 600" in result.output
    assert stored_digests(app) == [] and count_rows(app, CHAIN) == 0


# -- the signing key stays with the sealer -------------------------------------------------------------


def test_the_web_app_refuses_to_start_with_the_signing_key(app_config, key, monkeypatch):
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    with pytest.raises(ConfigError, match="AUDIT_SIGNING_KEY_FILE"):
        create_app({**app_config, "AUDIT_SIGNING_KEY_FILE": str(key.private)})
    monkeypatch.setenv("AUDIT_SIGNING_KEY_FILE", str(key.private))
    with pytest.raises(ConfigError, match="must never hold the digest signing key"):
        create_app(app_config)


def _process_env(app, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "FLASK_"))}
    env.update(APP_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               AUDIT_DATA_DIR=app.config["AUDIT_DATA_DIR"], SECRET_KEY="x" * 40, **extra)
    return env


def test_a_server_refuses_the_key_and_the_sealer_process_signs_until_sigterm(app, key):
    record_events(app, 3)
    env = _process_env(app, AUDIT_SIGNING_KEY_FILE=str(key.private), AUDIT_SEALER_INTERVAL="0.2",
                       AUDIT_DIGEST_EVERY_SECONDS="0")
    # What gunicorn does: import wsgi:app.
    server = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert server.returncode != 0 and "AUDIT_SIGNING_KEY_FILE is set" in server.stderr
    development_server = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", "0"],
                                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert development_server.returncode != 0 and "AUDIT_SIGNING_KEY_FILE is set" in development_server.stderr

    sealer = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "audit", "sealer"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not stored_digests(app) and time.monotonic() < deadline and sealer.poll() is None:
            time.sleep(0.2)
        sealer.send_signal(signal.SIGTERM)
        output, _ = sealer.communicate(timeout=30)
    finally:
        if sealer.poll() is None:
            sealer.kill()
    assert sealer.returncode == 0, output
    assert "Sealer: stopped." in output
    rows = stored_digests(app)
    assert rows and rows[0].first_seq == 1 and rows[-1].last_seq >= 3
    assert all(signature_checks(key.public_key(), r.body, r.signature) for r in rows)
    with app.app_context():
        assert db.session.scalar(select(LOGS.c.id).where(LOGS.c.action_type == ActionType.DIGEST_SIGNED.value)
                                 .limit(1)) is not None


@pytest.mark.settings(AUDIT_DIGEST_EVERY_EVENTS=3)
def test_the_shipped_digest_files_check_out_with_the_standalone_verifier(app, runner, key, other_key):
    """The files in AUDIT_DIGEST_DIR are what an auditor's copy of scripts/verify_audit_export.py expects, across a
    rotation too."""
    record_events(app, 4)
    assert run_sealer(app, runner, key, next_key=other_key).exit_code == 0
    record_events(app, 3)
    assert run_sealer(app, runner, other_key).exit_code == 0
    spec = importlib.util.spec_from_file_location("verify_audit_export", ROOT / "scripts/verify_audit_export.py")
    verifier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verifier)

    shipped = verifier.load_digests(app.config["AUDIT_DIGEST_DIR"])
    report = verifier.Report()
    verifier.check_digests(shipped, {fingerprint(key.public_key()): key.public_key(),
                                     fingerprint(other_key.public_key()): other_key.public_key()}, report)

    assert len(shipped) == len(stored_digests(app)) >= 3
    assert report.problems == []
