"""``flask audit keys generate`` and ``flask audit sealer``: the signing key and the one process that holds it.

The sealer is a service of its own (its own OS user, the only one that can read AUDIT_SIGNING_KEY_FILE): it seals
the chain and signs digests of it. The web app refuses the key (``config.check_signing_key``), so a compromised web
host can rewrite rows and even the chains, but cannot sign a digest that covers the rewrite.
"""

from __future__ import annotations

import logging

import click
from flask import current_app

from ...extensions import db
from ..integrity.digests import KeyMismatch, SealerKeys, sign_due_digests
from ..integrity.seal import seal
from ..integrity.signing import KeyFileError, fingerprint, generate_key_pair, load_public_keys, load_signing_key
from .common import public_keys_or_exit, until_stopped
from .maintenance import audit_cli

log = logging.getLogger(__name__)


@audit_cli.group("keys")
def keys_cli():
    """The Ed25519 keys of the signed digests."""


@keys_cli.command("generate")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write audit-signing-key.pem (0600) and audit-signing-key.pub.pem into.")
def generate_command(out_dir: str):
    """Make a new Ed25519 key pair for signing digests (never overwrites a key)."""
    try:
        private_path, public_path = generate_key_pair(out_dir)
    except (KeyFileError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    public = load_public_keys(public_path)[0]
    click.echo(f"Wrote the private key {private_path} (mode 0600: give it to the sealer's OS user alone) and the "
               f"public key {public_path}.")
    click.echo(f"Fingerprint: {fingerprint(public)}")


def _sealer_keys() -> SealerKeys:
    config = current_app.config
    path = config["AUDIT_SIGNING_KEY_FILE"]
    if not path:
        raise click.ClickException("AUDIT_SIGNING_KEY_FILE is not set: the sealer signs digests with that private key "
                                   "(make one with `flask --app wsgi audit keys generate --out DIR`).")
    try:
        current = load_signing_key(path)
        following = load_signing_key(config["AUDIT_NEXT_SIGNING_KEY_FILE"]) if config[
            "AUDIT_NEXT_SIGNING_KEY_FILE"] else None
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    return SealerKeys(current, following)


def _round(keys: SealerKeys, force: bool) -> None:
    """Seal what is committed, then sign the digests that are due (``force``: everything waiting)."""
    sealed = seal()
    try:
        signed = sign_due_digests(keys, force=force)
    finally:
        db.session.remove()
    if sealed.sealed:
        click.echo(f"Sealed {sealed.sealed:,} events.")
    for body in signed:
        rotation = f"; the next key is {body['next_key_fingerprint'][:16]}…" if body["next_key_fingerprint"] else ""
        click.echo(f"Signed a digest of links {body['first_seq']} to {body['last_seq']} with key "
                   f"{body['key_fingerprint'][:16]}…{rotation}.")


@audit_cli.command("sealer")
@click.option("--once", is_flag=True, help="Seal and sign everything that is waiting, then exit.")
def sealer_command(once: bool):
    """Seal the chain and sign digests of it, every AUDIT_SEALER_INTERVAL seconds, until SIGTERM or Ctrl-C.

    Needs AUDIT_SIGNING_KEY_FILE, readable by this process's OS user alone. Run it as a service of its own, never
    beside the web workers (docs/compliance.md, "Signed digests")."""
    keys = _sealer_keys()
    click.echo(f"Sealer: signing with key {keys.current.fingerprint}"
               + (f" (rotating to {keys.next.fingerprint})" if keys.next else "") + ".")
    published = public_keys_or_exit()
    if published is not None and keys.current.fingerprint not in {fingerprint(k) for k in published}:
        click.echo(f"Warning: AUDIT_PUBLIC_KEY_FILE does not hold the public half of AUDIT_SIGNING_KEY_FILE "
                   f"({keys.current.fingerprint}): `audit verify` will not accept these digests until it does.",
                   err=True)
    try:
        if once:
            _round(keys, force=True)
            return
        stop = until_stopped()
        interval = current_app.config["AUDIT_SEALER_INTERVAL"]
        while not stop.is_set():
            try:
                _round(keys, force=False)
            except KeyMismatch:
                raise
            except Exception:  # noqa: BLE001 - a database outage: log it and try again at the next round
                log.exception("sealer: this round failed; trying again in %s s", interval)
                db.session.remove()
            stop.wait(interval)
        click.echo("Sealer: stopped.")
    except KeyMismatch as exc:
        raise click.ClickException(str(exc)) from None
