"""Error-only indexes become partial: request and domain events no longer pay for them.

Revision ID: 0007_audit_partial_error_indexes
Revises: 0006_audit_indexes_from_explain
Create Date: 2026-11-27

Every audit insert maintains every index of ``audit_logs``, and most events (requests, logins, user
changes) have no severity, error type or fingerprint. The (severity|error_type, timestamp DESC, id DESC)
indexes become partial (``WHERE <column> IS NOT NULL``): a filter ``severity = 'ERROR'`` implies the
predicate, so the same queries use them, and an event without the column costs them nothing. The plain
``fingerprint`` index goes: on PostgreSQL the partial ``ix_audit_logs_errors`` (migration 0006) already serves
every fingerprint lookup, and SQLite gets the same partial index (without its INCLUDE columns) in its place.
docs/performance.md has the insert cost before and after.
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_audit_partial_error_indexes"
down_revision = "0006_audit_indexes_from_explain"
branch_labels = None
depends_on = None

SPARSE = ("severity", "error_type")


def _ordered(column: str) -> list:
    return [column, sa.text("timestamp DESC"), sa.text("id DESC")]


def upgrade():
    for column in SPARSE:
        op.drop_index(f"ix_audit_logs_{column}_timestamp", table_name="audit_logs")
        op.create_index(f"ix_audit_logs_{column}_timestamp", "audit_logs", _ordered(column), unique=False,
                        postgresql_where=sa.text(f"{column} IS NOT NULL"),
                        sqlite_where=sa.text(f"{column} IS NOT NULL"))
    op.drop_index("ix_audit_logs_fingerprint", table_name="audit_logs")
    if op.get_bind().dialect.name != "postgresql":
        op.create_index("ix_audit_logs_errors", "audit_logs", _ordered("fingerprint"), unique=False,
                        sqlite_where=sa.text("fingerprint IS NOT NULL"))


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_audit_logs_errors", table_name="audit_logs")
    op.create_index("ix_audit_logs_fingerprint", "audit_logs", ["fingerprint"], unique=False)
    for column in SPARSE:
        op.drop_index(f"ix_audit_logs_{column}_timestamp", table_name="audit_logs")
        op.create_index(f"ix_audit_logs_{column}_timestamp", "audit_logs", _ordered(column), unique=False)
