"""Indexes that keep filtered lists fast at ten million events.

Revision ID: 0005_audit_indexes_for_scale
Revises: 0004_audit_chain
Create Date: 2026-11-27

Each filterable column gets a composite index (column, timestamp DESC, id DESC): a filtered page in the
default order reads one page of index entries instead of sorting every match. They replace the
single-column indexes of 0002 (the composite serves the same equality lookups). On PostgreSQL a trigram
GIN index on lower(description) serves the case-insensitive `search` (LIKE '%word%').
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_audit_indexes_for_scale"
down_revision = "0004_audit_chain"
branch_labels = None
depends_on = None

COLUMNS = ("user_id", "action_type", "resource_type", "category", "status", "severity", "error_type")


def upgrade():
    for column in COLUMNS + ("timestamp",):
        op.drop_index(f"ix_audit_logs_{column}", table_name="audit_logs")
    for column in COLUMNS:
        op.create_index(f"ix_audit_logs_{column}_timestamp", "audit_logs",
                        [column, sa.text("timestamp DESC"), sa.text("id DESC")], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_audit_logs_description_trgm ON audit_logs "
                   "USING gin (lower(description) gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_audit_logs_description_trgm")
    for column in COLUMNS:
        op.drop_index(f"ix_audit_logs_{column}_timestamp", table_name="audit_logs")
    for column in COLUMNS + ("timestamp",):
        op.create_index(f"ix_audit_logs_{column}", "audit_logs", [column], unique=False)
