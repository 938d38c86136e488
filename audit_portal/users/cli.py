"""``flask users ...`` and ``flask tokens ...``: accounts and API tokens from the command line (through the same
services as the UI)."""

import secrets

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from ..extensions import db
from .models import Role, RoleName, User
from .rules import ServiceError
from .services import create_user, ensure_default_roles, find_user_by_username
from .tokens import create_token

users_cli = AppGroup("users", help="Manage user accounts.")


def _create(username: str, password: str, email: str, role: str, full_name: str) -> None:
    ensure_default_roles()
    try:
        user = create_user(None, username=username, email=email, password=password, full_name=full_name, role=role)
    except ServiceError as exc:
        db.session.rollback()
        raise click.UsageError(f"{exc.field}: {exc.message}") from None
    db.session.commit()
    click.echo(f"Created {user.role.name} {user.username} (id {user.id}).")


@users_cli.command("create-admin")
@click.option("--username", required=True)
@click.option("--password", required=True, help="At least PASSWORD_MIN_LENGTH characters.")
@click.option("--email", required=True)
@click.option("--full-name", default="")
def create_admin_command(username, password, email, full_name):
    """Create an administrator."""
    _create(username, password, email, RoleName.ADMIN.value, full_name)


@users_cli.command("create")
@click.option("--username", required=True)
@click.option("--password", required=True, help="At least PASSWORD_MIN_LENGTH characters.")
@click.option("--email", required=True)
@click.option("--role", default=RoleName.USER.value, show_default=True, help="user or admin")
@click.option("--full-name", default="")
def create_command(username, password, email, role, full_name):
    """Create a user (role ``user`` unless ``--role admin``)."""
    _create(username, password, email, role, full_name)


@users_cli.command("ensure-admin")
def ensure_admin_command():
    """Make sure an administrator exists (used by scripts/run.sh on first start).

    With ADMIN_USERNAME and ADMIN_PASSWORD (and optionally ADMIN_EMAIL) set, that account is created
    if it is missing. Otherwise, if there is no administrator at all, one called ``admin`` is created
    with a random password that is printed once.
    """
    cfg = current_app.config
    ensure_default_roles()
    username, password = cfg["ADMIN_USERNAME"], cfg["ADMIN_PASSWORD"]
    if bool(username) != bool(password):
        missing = "ADMIN_PASSWORD" if username else "ADMIN_USERNAME"
        raise click.UsageError(f"ADMIN_USERNAME and ADMIN_PASSWORD go together: set {missing} too, or neither "
                               "(then an 'admin' account with a generated password is created).")
    if username and password:
        existing = find_user_by_username(username)
        if existing is None:
            _create(username, password, cfg["ADMIN_EMAIL"] or f"{username}@localhost.localdomain", RoleName.ADMIN.value, "")
        elif not existing.is_admin:
            raise click.ClickException(
                f"User {existing.username} exists but is not an administrator. Set ADMIN_USERNAME to another "
                "name, or create an administrator with 'flask users create-admin'."
            )
        else:
            click.echo(f"Administrator {existing.username} already exists.")
        return
    has_admin = db.session.scalar(select(User.id).join(Role).where(Role.name == RoleName.ADMIN.value).limit(1))
    if has_admin is not None:
        db.session.commit()
        click.echo("An administrator already exists.")
        return
    password = secrets.token_urlsafe(15)
    _create("admin", password, "admin@localhost.localdomain", RoleName.ADMIN.value, "Administrator")
    click.echo("")
    click.echo("  First administrator created. Log in with:")
    click.echo("    username: admin")
    click.echo(f"    password: {password}")
    click.echo("  This password is shown only once; change it under 'Change password' after logging in.")
    click.echo("")


tokens_cli = AppGroup("tokens", help="API tokens for scripts.")


@tokens_cli.command("create")
@click.option("--username", required=True, help="The user the token acts as.")
@click.option("--name", default="", help="What the token is for, e.g. 'nightly export'.")
def create_token_command(username: str, name: str):
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
