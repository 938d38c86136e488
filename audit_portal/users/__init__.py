"""User accounts: users, roles and API tokens; the admin pages under /admin/users/ and the API under
/api/v1/users and /api/v1/me."""

from flask import Flask


def init_app(app: Flask) -> None:
    """The user management pages, the users API and the ``users`` and ``tokens`` commands."""
    from ..rest import register
    from . import token_views  # noqa: F401 - adds the token routes to views.bp
    from .api import blp, me_blp
    from .cli import tokens_cli, users_cli
    from .views import bp

    app.register_blueprint(bp)
    register(blp, me_blp)
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
