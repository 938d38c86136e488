"""Helpers for the signed-digest tests: key pairs made by the real command's function, the sealer run as a command
(`flask audit sealer --once`), the stored digests, and `flask audit verify` with a public key file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from audit_portal.audit.integrity.models import AuditDigest
from audit_portal.audit.integrity.signing import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, generate_key_pair
from audit_portal.extensions import db

DIGESTS = AuditDigest.__table__


class KeyPair:
    def __init__(self, directory: Path):
        generate_key_pair(directory)
        self.private = directory / PRIVATE_KEY_NAME
        self.public = directory / PUBLIC_KEY_NAME

    def public_key(self):
        return serialization.load_pem_public_key(self.public.read_bytes())

    def private_key(self):
        return serialization.load_pem_private_key(self.private.read_bytes(), password=None)


def run_sealer(app, runner, key: KeyPair, next_key: KeyPair | None = None):
    """`flask audit sealer --once` with ``key`` (and ``next_key`` for a rotation)."""
    app.config["AUDIT_SIGNING_KEY_FILE"] = str(key.private)
    app.config["AUDIT_NEXT_SIGNING_KEY_FILE"] = str(next_key.private) if next_key else ""
    try:
        return runner.invoke(args=["audit", "sealer", "--once"])
    finally:
        app.config["AUDIT_SIGNING_KEY_FILE"] = app.config["AUDIT_NEXT_SIGNING_KEY_FILE"] = ""


def verify_with(app, runner, public_file: Path | str):
    """`flask audit verify` with AUDIT_PUBLIC_KEY_FILE."""
    app.config["AUDIT_PUBLIC_KEY_FILE"] = str(public_file)
    try:
        return runner.invoke(args=["audit", "verify"])
    finally:
        app.config["AUDIT_PUBLIC_KEY_FILE"] = ""


def stored_digests(app) -> list:
    """The stored digests, oldest first."""
    with app.app_context(), db.engine.connect() as conn:
        return list(conn.execute(select(DIGESTS).order_by(DIGESTS.c.last_seq)))


def signature_checks(public_key, body_text: str, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature), body_text.encode("utf-8"))
    except Exception:  # noqa: BLE001 - InvalidSignature
        return False
    return True


def body(row) -> dict:
    return json.loads(row.body)
