"""User management (admin only): HTML pages under /admin/users/."""

from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/admin/users")

from . import token_views, views  # noqa: E402,F401
