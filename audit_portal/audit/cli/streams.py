"""``flask streams add|list|pause|resume|remove|run`` (docs/streams.md)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ...extensions import db
from ..streams import service as stream_service
from ..streams.runner import Dispatcher
from ..streams.schemas import StreamCreateSchema
from .common import load_or_usage_error, pairs, until_stopped

streams_cli = AppGroup("streams", help="Stream the audit trail to syslog, webhooks or files (docs/streams.md).")


@streams_cli.command("add")
@click.option("--name", required=True)
@click.option("--kind", required=True, help="syslog, webhook or file.")
@click.option("--format", "fmt", default="json", show_default=True, help="json, ecs or cef.")
@click.option("--url", default=None, help="syslog: tcp://host:port or tls://host:port; webhook: https://...")
@click.option("--path", default=None, help="file: a path relative to AUDIT_STREAM_FILE_DIR.")
@click.option("--filter", "filters", multiple=True, help="A list filter, key=value (repeatable).")
@click.option("--header", "headers", multiple=True, help="webhook: an extra header, Name=value (repeatable).")
@click.option("--ca-file", default=None, help="syslog over TLS: the receiver's CA bundle.")
@click.option("--start", default="now", show_default=True, help="now, or beginning (the stored trail first).")
def streams_add_command(name, kind, fmt, url, path, filters, headers, ca_file, start):
    """Add a destination (the same rules as the API)."""
    raw = {"name": name, "kind": kind, "format": fmt, "url": url, "path": path, "ca_file": ca_file, "start": start,
           "filters": pairs("--filter", filters), "headers": pairs("--header", headers)}
    data = load_or_usage_error(StreamCreateSchema(), {k: v for k, v in raw.items() if v not in (None, {})})
    try:
        destination, secret = stream_service.create_destination(None, data)
    except stream_service.StreamError as exc:
        db.session.rollback()
        raise click.UsageError(f"--{exc.field.replace('_', '-')}: {exc.message}") from None
    db.session.commit()
    click.echo(f"Added {destination.kind} destination {destination.name} (id {destination.id}, {destination.format}).")
    if secret:
        click.echo(f"Signing secret (shown once): {secret}")


@streams_cli.command("list")
def streams_list_command():
    """The destinations, their state and lag."""
    destinations = stream_service.list_destinations()
    if not destinations:
        click.echo("No stream destinations.")
    for d in destinations:
        error = f"  last error: {d.last_error}" if d.last_error else ""
        click.echo(f"{d.name:<20} {d.kind:<8} {d.format:<5} {d.state:<8} lag {d.lag_events:,} events "
                   f"({d.lag_seconds:,.0f} s)  {d.target}{error}")


def _named(name: str):
    try:
        return stream_service.find_destination(name)
    except stream_service.NotFound as exc:
        raise click.UsageError(str(exc)) from None


def _change(name: str, operation, done: str) -> None:
    operation(_named(name))
    db.session.commit()
    click.echo(f"{done} {name}.")


@streams_cli.command("pause")
@click.argument("name")
def streams_pause_command(name: str):
    """Pause a destination (its events wait)."""
    _change(name, lambda destination: stream_service.set_paused(None, destination, True), "Paused")


@streams_cli.command("resume")
@click.argument("name")
def streams_resume_command(name: str):
    """Resume a destination."""
    _change(name, lambda destination: stream_service.set_paused(None, destination, False), "Resumed")


@streams_cli.command("remove")
@click.argument("name")
def streams_remove_command(name: str):
    """Remove a destination."""
    _change(name, lambda destination: stream_service.delete_destination(None, destination), "Removed")


@streams_cli.command("run")
def streams_run_command():
    """Deliver every destination nobody else delivers, until SIGTERM or Ctrl-C (the production choice when the
    web workers run with STREAM_DISPATCH_IN_APP=false)."""
    stop = until_stopped()
    click.echo("Delivering stream destinations; Ctrl-C to stop.")
    Dispatcher(current_app._get_current_object()).run(stop, current_app.config["STREAM_POLL_SECONDS"])
