"""``flask audit export``: the same exporter as the API and the viewer, to a file or stdout."""

from __future__ import annotations

import sys

import click
from marshmallow import ValidationError

from .cli import audit_cli
from .exporter import ExportTooLarge, prepare_export
from .filters import AuditFilters
from .schemas import AuditLogFilterSchema

FILTER_OPTIONS = [name for name in AuditFilters.names()]


def _filter_options(func):
    for name in reversed(FILTER_OPTIONS):
        func = click.option(f"--{name.replace('_', '-')}", name, default=None, help=f"Filter: {name}.")(func)
    return func


@audit_cli.command("export")
@click.option("--format", "fmt", default="csv", show_default=True, help="csv, json or ndjson.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (default: standard output).")
@_filter_options
def export_command(fmt: str, output: str | None, **raw_filters):
    """Export the audit events matching the filters (same names and rules as the API)."""
    raw = {k: v for k, v in raw_filters.items() if v is not None}
    try:
        filters = AuditLogFilterSchema().load(raw)
    except ValidationError as exc:
        problems = "; ".join(f"--{k.replace('_', '-')}: {' '.join(map(str, v))}" for k, v in exc.messages.items())
        raise click.UsageError(problems) from None
    try:
        export = prepare_export(filters, fmt, channel="cli")
    except ValueError as exc:
        raise click.UsageError(f"--format: {exc}") from None
    except ExportTooLarge as exc:
        raise click.ClickException(str(exc)) from None
    stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        for chunk in export.chunks():
            stream.write(chunk)
    finally:
        if output:
            stream.close()
    if output:
        click.echo(f"Wrote {export.count:,} events to {output}.", err=True)
