"""Authentication: login, logout, password change, login throttling, and how a request's user is found
(session or API token)."""

from flask import Flask


def init_app(app: Flask) -> None:
    """The login pages, the user loaders, and the user directory the audit package names actors through."""
    from ..audit import use_actor_directory
    from . import loaders  # noqa: F401 - registers the Flask-Login user loaders
    from .actors import UserDirectory
    from .views import bp

    app.register_blueprint(bp)
    use_actor_directory(app, UserDirectory())
