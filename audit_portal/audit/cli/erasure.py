"""``flask audit erasure request|approve|reject|list``: the four-eyes erasure for operators who hold the server
(the same service as the Integrity page and ``/api/v1/erasure-requests/``)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ...extensions import db
from ..integrity import erasure

erasure_cli = AppGroup("erasure", help="Erase a person's personal data from the trail (four eyes).")


def _run(operation):
    """Run a service call and commit it; a refusal rolls back (nothing changed) and exits non-zero, saying why."""
    try:
        result = operation()
    except erasure.ErasureError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from None
    except erasure.NotFound as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    return result


def _admin(username: str) -> erasure.Admin:
    return _run(lambda: erasure.admin_named(username))


@erasure_cli.command("request")
@click.option("--user-id", type=click.IntRange(min=1, max=2**31 - 1), default=None, help="The person's user id.")
@click.option("--username", default=None, help="The person's username (also when the account is deleted).")
@click.option("--by", "by", required=True, metavar="USERNAME", help="The admin who asks.")
@click.option("--reason", required=True, help="Why (kept with the request and in the trail).")
def request_command(user_id: int | None, username: str | None, by: str, reason: str):
    """Ask for an erasure; prints the request's id. Another admin approves it."""
    if user_id is None and not username:
        raise click.UsageError("Give --user-id or --username (or both).")
    requester = _admin(by)
    made = _run(lambda: erasure.request_erasure(requester, reason, user_id=user_id, username=username))
    click.echo(made.id)
    click.echo(f"Erasure request {made.id} is waiting for another admin: flask --app wsgi audit erasure approve "
               f"{made.id} --by USERNAME", err=True)


@erasure_cli.command("approve")
@click.argument("request_id", type=int)
@click.option("--by", "by", required=True, metavar="USERNAME", help="The approving admin (not the requester).")
def approve_command(request_id: int, by: str):
    """Approve a request and carry out the erasure."""
    approver = _admin(by)
    done = _run(lambda: erasure.approve_erasure(request_id, approver))
    held = f"; {done.held_count:,} events in a legal hold were left as they are" if done.held_count else ""
    click.echo(f"Erasure request {done.id} carried out: personal data erased from {done.erased_count:,} events{held}.")
    if done.held_count:
        click.echo(f"Held events: {', '.join(map(str, (done.held_events or [])[:50]))}"
                   + (" ..." if done.held_count > 50 else ""))


@erasure_cli.command("reject")
@click.argument("request_id", type=int)
@click.option("--by", "by", required=True, metavar="USERNAME", help="The admin who rejects it.")
def reject_command(request_id: int, by: str):
    """Reject a request; nothing is erased."""
    decider = _admin(by)
    done = _run(lambda: erasure.reject_erasure(request_id, decider))
    click.echo(f"Erasure request {done.id} rejected.")


@erasure_cli.command("list")
def list_command():
    """The requests, newest first."""
    requests = erasure.list_requests()
    if not requests:
        click.echo("No erasure requests.")
    for r in requests:
        subject = " ".join(filter(None, [f"user #{r.subject_user_id}" if r.subject_user_id is not None else None,
                                         repr(r.subject_username) if r.subject_username else None]))
        decided = f", {r.status} by {r.decided_by} at {r.decided_at:%Y-%m-%d %H:%M}" if r.decided_at else ""
        counts = f", {r.erased_count:,} erased, {r.held_count:,} held" if r.erased_count is not None else ""
        click.echo(f"{r.id}  {r.status:<8}  {subject}  asked by {r.requested_by} at {r.requested_at:%Y-%m-%d %H:%M}"
                   f"{decided}{counts}  reason: {r.reason}")
