"""Audit commands: ``flask demo seed`` (and, as they land, ``flask audit ...``)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from ..extensions import db
from ..users.models import User
from . import rollup
from .bulk import copy_events, drop_secondary_indexes, rebuild_indexes
from .seed import generate
from .writer import insert_ignoring_duplicates

demo_cli = AppGroup("demo", help="Demo data.")
audit_cli = AppGroup("audit", help="Audit log maintenance.")

SEED_BATCH = 5000
#: From this many events on, a PostgreSQL seed drops the secondary indexes and rebuilds them afterwards.
REBUILD_INDEXES_FROM = 500_000


@demo_cli.command("seed")
@click.option("--count", default=2000, show_default=True, type=click.IntRange(min=1), help="How many events.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1), help="Spread over this many days.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation under APP_ENV=production.")
def seed_command(count: int, days: int, yes: bool):
    """Fill the audit log with synthetic, realistic events (marked as demo data in their metadata)."""
    if current_app.config["APP_ENV"] == "production" and not yes:
        click.confirm(f"Insert {count:,} demo events into the PRODUCTION audit log?", abort=True)
    users = [(u.id, u.username) for u in db.session.scalars(select(User).limit(50))]
    users += [(None, None)] if not users else []
    db.session.commit()
    rows = generate(count, users, days=days, demo=True)
    postgres = db.engine.dialect.name == "postgresql"
    saved_indexes = []
    if postgres and count >= REBUILD_INDEXES_FROM:
        with db.engine.begin() as connection:
            saved_indexes = drop_secondary_indexes(connection)
        click.echo(f"Dropped {len(saved_indexes)} secondary indexes for the load; they are rebuilt at the end.")
    written = 0
    days: list = []  # UTC days of the error events COPY loaded: the rollup recounts from the first to the last
    try:
        with click.progressbar(length=count, label="Seeding audit events") as bar:
            batch = []
            for event in rows:
                batch.append(event)
                if len(batch) >= SEED_BATCH:
                    written += _write(batch, postgres, days)
                    bar.update(len(batch))
                    batch = []
            if batch:
                written += _write(batch, postgres, days)
                bar.update(len(batch))
    finally:
        if saved_indexes:
            click.echo("Rebuilding indexes...")
            with db.engine.begin() as connection:
                rebuild_indexes(connection, saved_indexes)
        if days:
            # COPY bypasses the insert path that keeps the error rollup: recount the days it loaded.
            with db.engine.begin() as connection:
                rollup.rebuild(connection, min(days), max(days))
    click.echo(f"Inserted {written:,} demo events.")


def _write(batch: list[dict], postgres: bool, days: list) -> int:
    with db.engine.begin() as connection:
        if postgres:
            copy_events(connection, batch)
            days.extend(rollup.event_days(batch) or ())
        else:
            insert_ignoring_duplicates(connection, batch)  # keeps the rollup itself
    return len(batch)


@audit_cli.command("rollup")
def rollup_command():
    """Recount the error dashboard's rollup from the audit log.

    The app keeps it up to date as it writes events; this repairs it after rows reached audit_logs some
    other way (a restore with COPY, hand-written SQL)."""
    with db.engine.begin() as connection:
        rows = rollup.rebuild(connection)
    click.echo(f"Recounted the error rollup: {rows:,} rows (one per day, fingerprint, error type and severity).")
