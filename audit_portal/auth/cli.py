"""``flask tokens ...``: API tokens for scripts."""

import click
from flask.cli import AppGroup

from ..extensions import db
from ..users.services import ServiceError
from .services import find_user_by_username
from .tokens import create_token

tokens_cli = AppGroup("tokens", help="API tokens for scripts.")


@tokens_cli.command("create")
@click.option("--username", required=True, help="The user the token acts as.")
@click.option("--name", default="", help="What the token is for, e.g. 'nightly export'.")
def create_command(username: str, name: str):
    """Create an API token and print it once (it is stored only as a hash)."""
    user = find_user_by_username(username)
    if user is None:
        raise click.UsageError(f"No user called {username!r}.")
    if not user.can_log_in:
        raise click.UsageError(f"{username} cannot log in (inactive or not active status); a token would not work.")
    try:
        token, raw = create_token(None, user, name)
    except ServiceError as exc:
        db.session.rollback()
        raise click.UsageError(f"{exc.field}: {exc.message}") from None
    db.session.commit()
    click.echo(raw)
    click.echo(f"Token {token.prefix}… for {user.username} created. Store it now: it cannot be shown again.", err=True)
