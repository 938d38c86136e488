"""Audit commands: ``flask demo seed`` (and, as they land, ``flask audit ...``)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from ..extensions import db
from ..users.models import User
from .seed import generate
from .writer import insert_ignoring_duplicates

demo_cli = AppGroup("demo", help="Demo data.")
audit_cli = AppGroup("audit", help="Audit log maintenance.")

SEED_BATCH = 5000


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
    rows = generate(count, users, days=days, demo=True)
    written = 0
    with click.progressbar(length=count, label="Seeding audit events") as bar:
        batch = []
        for event in rows:
            batch.append(event)
            if len(batch) >= SEED_BATCH:
                written += _write(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            written += _write(batch)
            bar.update(len(batch))
    click.echo(f"Inserted {written:,} demo events.")


def _write(batch: list[dict]) -> int:
    with db.engine.begin() as connection:
        insert_ignoring_duplicates(connection, batch)
    return len(batch)
