"""``flask audit verify`` and ``flask audit purge``."""

from __future__ import annotations

import sys

import click
from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from .chain import record_verification, seal, verify
from .chain_models import AuditChainLink
from .cli import audit_cli
from .purge import execute_purge, plan_purge


@audit_cli.command("verify")
def verify_command():
    """Seal new events, then walk the hash chain; exit 0 only when it is intact."""
    sealed = seal()
    if sealed.sealed:
        click.echo(f"Sealed {sealed.sealed:,} new events" + (f" ({sealed.late} committed late)" if sealed.late else "")
                   + ".")
    total = db.session.scalar(select(func.count()).select_from(AuditChainLink)) or 0
    with click.progressbar(length=total, label="Verifying the audit chain", file=sys.stderr) as bar:
        result = verify(progress=bar.update)
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


@audit_cli.command("purge")
@click.option("--older-than-days", required=True, type=click.IntRange(min=0), help="Delete events older than this.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(older_than_days: int, dry_run: bool, yes: bool):
    """Delete events older than N days, in batches, and record that the purge ran."""
    retention = current_app.config["AUDIT_RETENTION_DAYS"]
    if older_than_days < retention:
        click.echo(f"Warning: {older_than_days} days is shorter than AUDIT_RETENTION_DAYS ({retention}).", err=True)
    plan = plan_purge(older_than_days)
    db.session.rollback()  # no transaction stays open (holding a snapshot) while the operator reads the prompt
    if plan.count == 0:
        click.echo(f"Nothing to purge: no sealed events older than {plan.cutoff:%Y-%m-%d %H:%M} UTC.")
        return
    summary = (f"{plan.count:,} events from {plan.first_timestamp:%Y-%m-%d %H:%M} to "
               f"{plan.last_timestamp:%Y-%m-%d %H:%M} UTC (older than {older_than_days} days)")
    if dry_run:
        click.echo(f"Dry run: would delete {summary}.")
        return
    if not yes:
        click.confirm(f"Delete {summary}? This cannot be undone", abort=True)
    with click.progressbar(length=plan.count, label="Purging", file=sys.stderr) as bar:
        deleted = execute_purge(plan, progress=bar.update)
    click.echo(f"Deleted {deleted:,} events; a RETENTION_PURGE event records the cut.")
