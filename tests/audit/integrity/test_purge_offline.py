"""Offline verification after a category purge: an export with digests (``audit export --with-digests``) checked by
``scripts/verify_audit_export.py`` passes with the purged events' tombstones (the purge record signed into the next
digest covers them), and still names an event deleted by hand.

The digests are signed here by a small stand-in for the sealer (``sign_digest``), in the format spec19.md fixes."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select

from audit_portal.audit.integrity import canonical
from audit_portal.audit.integrity.models import AuditDigest, AuditPurge
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow

from ..chain_support import CHAIN, LOGS, seal, tamper
from .test_purge import RETENTION, existing, hold, purge_cli, record

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "verify_audit_export.py"


def offline():
    spec = importlib.util.spec_from_file_location("verify_audit_export", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sign_digest(app, key: Ed25519PrivateKey) -> None:
    """Sign the links sealed since the last digest, with the purges recorded since, as the sealer does."""
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = hashlib.sha256(public).hexdigest()
    with app.app_context():
        session = db.session
        previous = session.scalar(select(AuditDigest).order_by(AuditDigest.last_seq.desc()).limit(1))
        first = previous.last_seq + 1 if previous else 1
        last = session.scalar(select(func.max(CHAIN.c.seq)))
        low, high = session.execute(select(func.min(CHAIN.c.event_timestamp), func.max(CHAIN.c.event_timestamp))
                                    .where(CHAIN.c.seq.between(first, last))).one()
        seen = max((p["id"] for p in json.loads(previous.body)["purges"]), default=0) if previous else 0
        purges = [{"id": p.id, "at": canonical.iso(p.at), "cutoffs": p.cutoffs, "holds": p.holds,
                   "head_seq": p.head_seq, "count": p.count}
                  for p in session.scalars(select(AuditPurge).where(AuditPurge.id > seen).order_by(AuditPurge.id))]
        head = session.scalar(select(CHAIN.c.public_hash).where(CHAIN.c.seq == last))
        body = {"version": 1, "first_seq": first, "last_seq": last, "count": last - first + 1,
                "prev_head": previous.head if previous else canonical.GENESIS, "head": head,
                "from": canonical.iso(low), "to": canonical.iso(high), "created_at": canonical.iso(utcnow()),
                "previous_signature": previous.signature if previous else None, "key_fingerprint": fingerprint,
                "next_key_fingerprint": None, "purges": purges}
        text = canonical.encode(body).decode()
        session.add(AuditDigest(first_seq=first, last_seq=last, head=head, key_fingerprint=fingerprint, body=text,
                                signature=base64.b64encode(key.sign(text.encode())).decode()))
        session.commit()


def check_offline(runner, tmp_path: Path, key: Ed25519PrivateKey, name: str, *filters: str) -> tuple[int, str]:
    folder = tmp_path / name
    folder.mkdir()
    events = folder / "events.ndjson"
    exported = runner.invoke(args=["audit", "export", "--format", "ndjson", "--with-digests", str(folder / "digests"),
                                   "-o", str(events), *filters])
    assert exported.exit_code == 0, exported.output
    public_key = folder / "key.pub.pem"
    public_key.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    out = io.StringIO()
    with redirect_stdout(out):
        status = offline().main(["--events", str(events), "--digests", str(folder / "digests"),
                                 "--public-key", str(public_key)])
    return status, out.getvalue()


@pytest.mark.settings(**RETENTION)
def test_an_export_verifies_offline_after_a_category_purge_and_a_hand_deletion_does_not(app, runner, tmp_path):
    key = Ed25519PrivateKey.generate()
    purged = [record(app, "requests", 100), record(app, "data", 200), record(app, "authentication", 400)]
    young, security, held = record(app, "requests", 10), record(app, "security", 400), record(app, "data", 300)
    hold(app, 301, 299)
    seal(app)
    sign_digest(app, key)

    assert purge_cli(runner, "--yes").exit_code == 0
    assert existing(app, purged + [young, security, held]) == sorted([young, security, held])
    seal(app)
    sign_digest(app, key)  # carries the purge's record

    status, output = check_offline(runner, tmp_path, key, "after-purge")
    assert status == 0, output
    assert f"(of which {len(purged)} purged)" in output
    status, output = check_offline(runner, tmp_path, key, "filtered", "--category", "security")
    assert status == 0, output
    assert output.startswith("OK: 1 events") and f"(of which {len(purged)} purged)" in output

    tamper(app, delete(LOGS).where(LOGS.c.id == held))
    status, output = check_offline(runner, tmp_path, key, "after-deletion")
    assert status == 1, output
    with app.app_context():
        seq = db.session.scalar(select(CHAIN.c.seq).where(CHAIN.c.audit_log_id == held))
    assert f"The event at link {seq} was deleted: no signed purge record covers it." in output
    assert output.count("was deleted") == 1
