"""``/``: send each user to the most useful page."""

from flask import Blueprint, Flask, redirect, url_for
from flask_login import current_user

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_user.is_admin:
        return redirect(url_for("audit.list_logs"))
    return redirect(url_for("auth.password"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
