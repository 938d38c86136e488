"""What the command groups share: parsing ``key=value`` options, schema errors as usage errors, running a
background loop in the foreground until SIGTERM or Ctrl-C, and reading AUDIT_PUBLIC_KEY_FILE."""

from __future__ import annotations

import signal
import threading

import click
from flask import current_app
from marshmallow import ValidationError

from ..integrity.signing import KeyFileError, load_public_keys


def pairs(option: str, values: tuple[str, ...]) -> dict:
    out = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{option}: expected key=value, got {value!r}.")
        out[key] = item
    return out


def load_or_usage_error(schema, data: dict) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        problems = "; ".join(f"--{k.replace('_', '-')}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                             for k, v in exc.messages.items())
        raise click.UsageError(problems) from None


def until_stopped() -> threading.Event:
    """An event set by SIGTERM or Ctrl-C (a loop in the foreground stops after its current round)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def public_keys_or_exit():
    """The keys of AUDIT_PUBLIC_KEY_FILE (None when unset); a file that does not parse stops the command."""
    path = current_app.config["AUDIT_PUBLIC_KEY_FILE"]
    if not path:
        return None
    try:
        return load_public_keys(path)
    except KeyFileError as exc:
        raise click.ClickException(f"AUDIT_PUBLIC_KEY_FILE: {exc}") from None
