"""Ed25519 keys for the signed digests: making a key pair, reading the key files, fingerprints, signing and checking.

The private key lives only with the sealer process (``flask audit sealer``, ``AUDIT_SIGNING_KEY_FILE``); anyone
with the public key (``AUDIT_PUBLIC_KEY_FILE``, served by the API) can check a digest. Files: the private key as
PKCS 8 PEM, the public one as SubjectPublicKeyInfo PEM (what ``openssl pkey`` reads and writes).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_KEY_NAME = "audit-signing-key.pem"
PUBLIC_KEY_NAME = "audit-signing-key.pub.pem"
_PEM_BEGIN = b"-----BEGIN PUBLIC KEY-----"


class KeyFileError(ValueError):
    """A key file that is missing, unreadable, not a PEM key of the right kind, or too open."""


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo (DER), hex: the name digests give their signing key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """The sealer's private key, with the fingerprint of its public half."""

    private: Ed25519PrivateKey
    path: str

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, body: bytes) -> str:
        """The Ed25519 signature of ``body``, base64."""
        return base64.b64encode(self.private.sign(body)).decode("ascii")


def generate_key_pair(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write a new key pair into ``out_dir``: the private key readable by its owner alone (0600), the public one
    0644. Refuses to overwrite either file (a lost signing key cannot be recovered), before writing anything."""
    out = Path(out_dir)
    private_path, public_path = out / PRIVATE_KEY_NAME, out / PUBLIC_KEY_NAME
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing:
        raise KeyFileError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: refusing to "
                           "overwrite a key (nothing was written). "
                           "Move the old files away first, or choose another --out directory.")
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    # O_EXCL: never through an existing file or a link planted there; the mode is set at creation, so the key is
    # never readable by others, not even for a moment (the umask may only narrow it).
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_bytes)
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(public_pem(key.public_key()))
    os.chmod(public_path, 0o644)  # whatever the umask: it is meant to be handed out
    return private_path, public_path


def _read(path: str | os.PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"Cannot read the {what} {path}: {exc.strerror or exc}.") from None


def check_private_permissions(path: str | os.PathLike) -> None:
    """Refuse a private key file that its group or others may read or write (as ssh does)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise KeyFileError(f"Cannot read the signing key {path}: {exc.strerror or exc}.") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"The signing key {path} is accessible by its group or others (mode "
                           f"{stat.S_IMODE(mode):04o}); it must be readable by the sealer's user alone: "
                           f"chmod 600 {path}")


def load_signing_key(path: str | os.PathLike) -> SigningKey:
    """The Ed25519 private key in ``path`` (PKCS 8 PEM, unencrypted), after checking that only its owner can read
    it."""
    check_private_permissions(path)
    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"The signing key {path} is not an unencrypted PKCS 8 PEM private key ({exc}). "
                           "Make one with `flask --app wsgi audit keys generate --out DIR`.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"The signing key {path} is not an Ed25519 key.")
    return SigningKey(key, str(path))


def load_public_keys(path: str | os.PathLike) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys in ``path``: one SubjectPublicKeyInfo PEM block, or several one after another (an
    auditor lists every key the digests were signed with, old ones first or not)."""
    data = _read(path, "public key file")
    blocks = [_PEM_BEGIN + part for part in data.split(_PEM_BEGIN)[1:]]
    if not blocks:
        raise KeyFileError(f"The public key file {path} holds no PEM public key "
                           "(expected a '-----BEGIN PUBLIC KEY-----' block).")
    keys = []
    for number, block in enumerate(blocks, 1):
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"The public key file {path}: key {number} does not parse ({exc}).") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"The public key file {path}: key {number} is not an Ed25519 key.")
        keys.append(key)
    return keys


def signature_ok(public_key: Ed25519PublicKey, body: bytes, signature_b64: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), body)
    except (InvalidSignature, ValueError):
        return False
    return True
