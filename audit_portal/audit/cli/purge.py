"""``flask audit purge``: retention by category, outside the legal holds; the purged events' links stay as
tombstones (docs/compliance.md)."""

from __future__ import annotations

import sys

import click
from flask import current_app

from ...extensions import db
from ..integrity.purge import HoldsChanged, describe_cutoffs, execute_purge, plan_purge
from ..streams import service as stream_service
from .maintenance import audit_cli


@audit_cli.command("purge")
@click.option("--older-than-days", default=None, type=click.IntRange(min=0),
              help="Delete every category's events older than this [default: each category's retention: "
                   "AUDIT_RETENTION_DAYS_BY_CATEGORY, the rest AUDIT_RETENTION_DAYS].")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted, per category.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(older_than_days: int | None, dry_run: bool, yes: bool):
    """Delete sealed events past their retention, outside every legal hold, in batches; their chain links stay as
    tombstones, and an audit_purges row and a RETENTION_PURGE event record the purge."""
    retention = current_app.config["AUDIT_RETENTION_DAYS"]
    if older_than_days is not None and older_than_days < retention:
        click.echo(f"Warning: {older_than_days} days is shorter than AUDIT_RETENTION_DAYS ({retention}).", err=True)
    plan = plan_purge(older_than_days)
    db.session.rollback()  # no transaction stays open (holding a snapshot) while the operator reads the prompt
    empty = [d.name for d in plan.drops if not d.count]
    _say_cutoffs(plan)
    if plan.held:
        click.echo(f"{plan.held:,} event(s) past retention are kept by legal holds.")
    if plan.count == 0 and not empty:
        click.echo(f"Nothing to purge: no sealed events {describe_cutoffs(plan)} outside the legal holds.")
        return
    summary = _summary(plan, empty)
    for name, links in stream_service.behind(plan.last_seq or 0):
        click.echo(f"Warning: stream destination {name} has not been sent up to {links:,} of these events yet "
                   "(paused, failing or behind): once purged they never reach it.", err=True)
    db.session.rollback()
    if dry_run:
        click.echo(f"Dry run: would delete {summary}.")
        for category, count in sorted(plan.by_category.items()):
            click.echo(f"  {category}: {count:,}")
        return
    if not yes:
        click.confirm(f"Delete {summary}? This cannot be undone", abort=True)
    with click.progressbar(length=plan.count, label="Purging", file=sys.stderr) as bar:
        try:
            deleted = execute_purge(plan, progress=bar.update)
        except HoldsChanged as exc:
            raise click.ClickException(str(exc)) from None
    _report(plan, deleted, empty)


def _report(plan, deleted: int, empty: list[str]) -> None:
    for drop in plan.drops:
        if drop.count and drop.dropped:
            click.echo(f"Dropped {drop.name} ({drop.count:,} events): audit_logs locked for "
                       f"{drop.locked_seconds:.3f} s, the table dropped in {drop.drop_seconds:.3f} s.")
    empty = [d.name for d in plan.drops if not d.count and d.dropped]
    if empty:
        click.echo(f"Dropped the empty months {', '.join(empty)}.")
    if plan.count:
        click.echo(f"Deleted {deleted:,} events; their chain links stay as tombstones, and a RETENTION_PURGE event "
                   "records the purge.")


def _say_cutoffs(plan) -> None:
    if plan.older_than_days is not None:
        return
    for key, cutoff in sorted(plan.cutoffs.items(), key=lambda item: item[0] == "*"):
        label = "other categories" if key == "*" else key
        click.echo(f"Retention for {label}: events before {cutoff:%Y-%m-%d %H:%M} UTC.")


def _summary(plan, empty: list[str]) -> str:
    if plan.count:
        summary = (f"{plan.count:,} events from {plan.first_timestamp:%Y-%m-%d %H:%M} to "
                   f"{plan.last_timestamp:%Y-%m-%d %H:%M} UTC ({describe_cutoffs(plan)})")
    else:
        summary = f"no events (nothing sealed is {describe_cutoffs(plan)})"
    whole = [d for d in plan.drops if d.count]
    if whole:
        summary += (f"; {sum(d.count for d in whole):,} of them by dropping "
                    f"{', '.join(d.name for d in whole)} whole")
    if empty:
        summary += f"; and the empty months {', '.join(empty)}"
    return summary
