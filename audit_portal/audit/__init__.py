"""The audit log: the record, how events are written, and the pages and API that read them."""

from flask import Blueprint

bp = Blueprint("audit", __name__, url_prefix="/admin/audit-logs")

from . import chain_models, integrity_views, rollup, views  # noqa: E402,F401  (models: for migrations)
