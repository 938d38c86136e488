"""``flask audit verify|partitions|export|rollup`` and ``flask demo seed`` (``purge`` and ``hold``: their own modules)."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup
from marshmallow import ValidationError
from sqlalchemy import func, select, text

from ...extensions import db
from ..demo.bulk import load_chunks
from ..demo.seed import COLUMNS, generate_chunks
from ..integrity.digest_check import check_digests, digest_count
from ..integrity.evidence import NoDigests, write_evidence
from ..integrity.seal import seal
from ..integrity.verify import record_verification, verify
from ..read.export import ExportTooLarge, prepare_export
from ..read.query import AuditFilters
from ..read.schemas import AuditLogFilterSchema
from ..record import partitions
from ..record.actors import directory
from ..record.models import AuditChainLink
from ..write import rollup
from ..write.service import log_export
from .common import public_keys_or_exit

demo_cli = AppGroup("demo", help="Demo data.")
audit_cli = AppGroup("audit", help="Audit log maintenance.")


@demo_cli.command("seed")
@click.option("--count", default=2000, show_default=True, type=click.IntRange(min=1), help="How many events.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1), help="Spread over this many days.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation under APP_ENV=production.")
def seed_command(count: int, days: int, yes: bool):
    """Fill the audit log with synthetic, realistic events (marked as demo data in their metadata)."""
    if current_app.config["APP_ENV"] == "production" and not yes:
        click.confirm(f"Insert {count:,} demo events into the PRODUCTION audit log?", abort=True)
    users = directory().some(50) or [(None, None)]
    db.session.commit()
    chunks = generate_chunks(count, users, days=days, demo=True)
    written = load_chunks(chunks, COLUMNS, count, say=click.echo,
                          progress=lambda: click.progressbar(length=count, label="Seeding audit events"))
    click.echo(f"Inserted {written:,} demo events.")


@audit_cli.command("rollup")
def rollup_command():
    """Recount the error dashboard's rollup from the audit log.

    The app keeps it up to date as it writes events; this repairs it after rows reached audit_logs some
    other way (a restore with COPY, hand-written SQL)."""
    with db.engine.begin() as connection:
        rows = rollup.rebuild(connection)
    click.echo(f"Recounted the error rollup: {rows:,} rows (one per day, fingerprint, error type and severity).")


@audit_cli.command("verify")
def verify_command():
    """Seal new events, then walk the hash chain (and, with AUDIT_PUBLIC_KEY_FILE, check the signed digests); exit 0
    only when everything is intact."""
    public_keys = public_keys_or_exit()  # before anything is sealed or recorded: a bad key file changes nothing
    sealed = seal()
    if sealed.sealed:
        click.echo(f"Sealed {sealed.sealed:,} new events" + (f" ({sealed.late} committed late)" if sealed.late else "")
                   + ".")
    total = db.session.scalar(select(func.count()).select_from(AuditChainLink)) or 0
    with click.progressbar(length=total, label="Verifying the audit chain", file=sys.stderr) as bar:
        result = verify(progress=bar.update)
    if public_keys is not None:
        _check_digests(public_keys, result)
    elif digest_count():
        click.echo(f"Note: {digest_count():,} signed digests are stored; set AUDIT_PUBLIC_KEY_FILE to check them too.")
    record_verification(result)
    if result.late:
        click.echo(f"Note: {result.late:,} event(s) committed late (after newer events had been sealed) and were "
                   f"chained at the end: events {', '.join(map(str, result.late_events))}"
                   + (" and more" if result.late > len(result.late_events) else "")
                   + ". A slow transaction explains one; check any you do not expect.")
    if result.ok:
        click.echo(f"OK: the audit chain is intact ({result.checked:,} events, head at link {result.head_seq}).")
        return
    click.echo(f"FAILED: {result.problem_count:,} problem(s) in the audit chain:", err=True)
    for problem in result.problems[:20]:
        click.echo(f"  - {problem}", err=True)
    if result.problem_count > 20:
        click.echo(f"  ... and {result.problem_count - 20:,} more.", err=True)
    sys.exit(1)


def _check_digests(public_keys, result) -> None:
    """Add the signed digests' problems to ``result`` and say what they cover."""
    report = check_digests(public_keys)
    for problem in report.problems:
        result.problem(problem)
    if not report.checked:
        click.echo("Note: AUDIT_PUBLIC_KEY_FILE is set but no signed digest is stored yet (is the sealer running?).")
        return
    click.echo(f"Checked {report.checked:,} signed digests (links up to {report.last_seq}; keys named: "
               f"{', '.join(fp[:16] + '…' for fp in report.keys_used)}); links after {report.last_seq} await the next.")


@audit_cli.command("partitions")
@click.option("--ahead", default=None, type=click.IntRange(min=0, max=120),
              help="Months after this one that must have a partition [default: AUDIT_PARTITIONS_AHEAD, 3].")
def partitions_command(ahead: int | None):
    """Create the monthly partitions of this month and the next ones (PostgreSQL), and list them all."""
    if db.engine.dialect.name != "postgresql":
        click.echo("SQLite keeps the audit log in one table: there are no partitions.")
        return
    with db.engine.connect() as conn:
        if not partitions.is_partitioned(conn):
            raise click.ClickException("audit_logs is not partitioned: run `flask --app wsgi db upgrade` first.")
    ahead = current_app.config["AUDIT_PARTITIONS_AHEAD"] if ahead is None else ahead
    made = partitions.create_ahead(db.engine, ahead, lock_timeout_ms=current_app.config[
        "AUDIT_PARTITION_LOCK_TIMEOUT_MS"])
    with db.engine.connect() as conn:
        listed = partitions.partitions(conn)
        sizes = dict(conn.execute(text("SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_inherits i "
                                       "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_logs'::regclass"))
                     .all())
    for partition in listed:
        mark = "  (new)" if partition.name in made else ""
        click.echo(f"{partition.name}  {partition.lower:%Y-%m-%d} to {partition.upper:%Y-%m-%d}  "
                   f"~{sizes.get(partition.name, 0):,} events{mark}")
    click.echo(f"{len(listed)} partitions; {len(made)} created.")


def _filter_options(func):
    for name in reversed(AuditFilters.names()):
        func = click.option(f"--{name.replace('_', '-')}", name, default=None, help=f"Filter: {name}.")(func)
    return func


@audit_cli.command("export")
@click.option("--format", "fmt", default="csv", show_default=True, help="csv, json or ndjson.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (default: standard output).")
@click.option("--with-digests", "digest_dir", type=click.Path(file_okay=False, writable=True), default=None,
              help="Write an export an auditor can check offline (ndjson only): every link of the signed range, and "
                   "the signed digests into this directory (scripts/verify_audit_export.py checks it).")
@_filter_options
def export_command(fmt: str, output: str | None, digest_dir: str | None, **raw_filters):
    """Export the audit events matching the filters (same names and rules as the API)."""
    raw = {k: v for k, v in raw_filters.items() if v is not None}
    try:
        filters = AuditLogFilterSchema().load(raw)
    except ValidationError as exc:
        problems = "; ".join(f"--{k.replace('_', '-')}: {' '.join(map(str, v))}" for k, v in exc.messages.items())
        raise click.UsageError(problems) from None
    if digest_dir is not None:
        _export_evidence(fmt, output, digest_dir, filters)
        return
    try:
        export = prepare_export(filters, fmt)
    except ValueError as exc:
        raise click.UsageError(f"--format: {exc}") from None
    except ExportTooLarge as exc:
        raise click.ClickException(str(exc)) from None
    stream = _open_output(output)  # before the EXPORT event: a file that cannot be written exports nothing
    log_export(export.count, export.format.value, filters.active(), "cli")
    try:
        for chunk in export.chunks():
            stream.write(chunk)
    finally:
        if output:
            stream.close()
    if output:
        click.echo(f"Wrote {export.count:,} events to {output}.", err=True)


def _open_output(output: str | None):
    """The export's file (standard output when none), or a usage error that names what is wrong with it."""
    if not output:
        return sys.stdout
    try:
        return open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise click.UsageError(f"--output {output}: cannot be written ({exc.strerror}).") from None


def _export_evidence(fmt: str, output: str | None, digest_dir: str, filters) -> None:
    if fmt.lower() != "ndjson":
        raise click.UsageError("--with-digests writes NDJSON: use --format ndjson.")
    stream = _open_output(output)
    try:
        result = write_evidence(filters, stream, digest_dir)
    except NoDigests as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if output:
            stream.close()
    log_export(result.events, "ndjson", {**filters.active(), "with_digests": True}, "cli")
    if result.first_seq is None:
        click.echo("No signed events match: nothing written (the digests cover none of them yet).", err=True)
    else:
        click.echo(f"Wrote {result.events:,} events and {result.links:,} other links (links {result.first_seq} to "
                   f"{result.last_seq}) to {output or 'standard output'}, and {result.digests} digest(s) to "
                   f"{digest_dir}.", err=True)
    if result.unsigned:
        click.echo(f"Left out {result.unsigned:,} matching event(s) sealed after the last digest: run the sealer "
                   "and export again to include them.", err=True)
