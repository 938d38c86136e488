"""``GET /healthz``: is the app up and does the database answer? No auth, not audited."""

import contextlib

from flask import Blueprint, Flask, jsonify
from sqlalchemy import text

from .extensions import csrf, db, limiter

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        with contextlib.suppress(Exception):  # the connection may be gone: nothing to roll back
            db.session.rollback()
        return jsonify({"status": "unavailable", "database": "unreachable"}), 503
    return jsonify({"status": "ok", "database": "ok"})



def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
