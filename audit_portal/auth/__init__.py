"""Authentication: login, logout, password change, and the session user loader."""

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")

from . import loaders, models, views  # noqa: E402,F401  (routes, the user loaders, the token model)
