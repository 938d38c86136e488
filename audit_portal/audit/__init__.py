"""The audit log: the record, how events are written, and the pages and API that read them."""

from flask import Blueprint

bp = Blueprint("audit", __name__, url_prefix="/admin/audit-logs")

from . import chain_models, integrity_views, views  # noqa: E402,F401  (chain_models: for migrations)
