"""``flask audit hold add|list|release``: legal holds, which keep their events from the retention purge
(docs/compliance.md)."""

from __future__ import annotations

from types import SimpleNamespace

import click

from ...extensions import db
from ..integrity import holds as hold_service
from ..integrity.schemas import HoldCreateSchema
from ..record.actors import directory
from .common import load_or_usage_error
from .maintenance import audit_cli


@audit_cli.group("hold")
def hold_cli():
    """Legal holds: time ranges whose events the retention purge keeps until released."""


def _actor(username: str | None):
    if username is None:
        return None
    found = directory().find(username)
    if found is None:
        raise click.UsageError(f"--by: there is no user called {username!r}.")
    return SimpleNamespace(id=found[0], username=found[1])


def _refused(exc: hold_service.HoldError):
    db.session.rollback()
    option = "ID" if exc.field == "id" else f"--{exc.field}"
    return click.UsageError(f"{option}: {exc.message}")


@hold_cli.command("add")
@click.option("--from", "starts", required=True, help="First moment held (ISO 8601; a date: from its start, UTC).")
@click.option("--to", "ends", required=True, help="Last moment held (ISO 8601; a date: to its end, UTC).")
@click.option("--reason", required=True, help="Why the events are held (a case reference, for instance).")
@click.option("--by", "by", default=None, help="The username of the admin placing the hold (recorded).")
def hold_add_command(starts: str, ends: str, reason: str, by: str | None):
    """Place a legal hold on the events of a time range; prints its id."""
    data = load_or_usage_error(HoldCreateSchema(), {"from": starts, "to": ends, "reason": reason})
    try:
        hold = hold_service.add_hold(_actor(by), data["starts_at"], data["ends_at"], data["reason"])
    except hold_service.HoldError as exc:
        raise _refused(exc) from None
    db.session.commit()
    click.echo(f"Legal hold {hold.id} placed on events from {hold.starts_at.isoformat()} to "
               f"{hold.ends_at.isoformat()}.")


@hold_cli.command("list")
@click.option("--active", "only_active", is_flag=True, help="Only the holds in force.")
def hold_list_command(only_active: bool):
    """The legal holds: in force first, then released."""
    holds = [h for h in hold_service.list_holds() if not only_active or h.released_at is None]
    if not holds:
        click.echo("No legal holds.")
    for hold in holds:
        state = ("active" if hold.released_at is None else
                 f"released {hold.released_at:%Y-%m-%d %H:%M} UTC by {hold.released_by or 'the command line'}")
        click.echo(f"{hold.id:>4}  {hold.starts_at.isoformat()} to {hold.ends_at.isoformat()}  {state}  "
                   f"placed by {hold.created_by or 'the command line'}: {hold.reason}")


@hold_cli.command("release")
@click.argument("hold_id", metavar="ID", type=int)
@click.option("--by", "by", default=None, help="The username of the admin releasing the hold (recorded).")
def hold_release_command(hold_id: int, by: str | None):
    """Release a legal hold: the purge may then remove its events (those past their retention)."""
    try:
        hold = hold_service.release_hold(_actor(by), hold_id)
    except hold_service.HoldError as exc:
        raise _refused(exc) from None
    db.session.commit()
    click.echo(f"Released legal hold {hold.id}.")
