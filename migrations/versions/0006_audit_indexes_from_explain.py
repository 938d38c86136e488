"""Indexes the EXPLAIN (ANALYZE, BUFFERS) runs at millions of rows asked for (docs/scaling.md).

Revision ID: 0006_audit_indexes_from_explain
Revises: 0005_audit_indexes_for_scale
Create Date: 2026-11-27

- (user_id, action_type, timestamp DESC, id DESC) and (category, status, timestamp DESC, id DESC): the two
  common two-filter combinations ("what did this user do of this kind", "security failures"). With only
  the one-column composites, their bounded count ANDed two bitmaps of hundreds of thousands of rows and
  rechecked the heap (0.3 s at 3,000,000 rows, growing with the table); now it is an index-only range scan.
- On PostgreSQL, a partial covering index for the error dashboard: (fingerprint, timestamp DESC, id DESC)
  INCLUDE (error_type, severity) WHERE fingerprint IS NOT NULL. It holds only the error events (about a
  tenth of the log) and everything the dashboard's grouping and per-day chart read, so they are index-only
  scans instead of a sequential scan of the whole table; one group's page is a short range scan.
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_audit_indexes_from_explain"
down_revision = "0005_audit_indexes_for_scale"
branch_labels = None
depends_on = None

PAIRS = {"ix_audit_logs_user_id_action_type_timestamp": ("user_id", "action_type"),
         "ix_audit_logs_category_status_timestamp": ("category", "status")}


def upgrade():
    for name, columns in PAIRS.items():
        op.create_index(name, "audit_logs", [*columns, sa.text("timestamp DESC"), sa.text("id DESC")], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_audit_logs_errors ON audit_logs (fingerprint, timestamp DESC, id DESC) "
                   "INCLUDE (error_type, severity) WHERE fingerprint IS NOT NULL")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_audit_logs_errors")
    for name in PAIRS:
        op.drop_index(name, table_name="audit_logs")
