"""The audit_logs table and the indexes its filters and default order use.

Revision ID: 0002_audit_logs
Revises: 0001_users_and_roles
Create Date: 2026-11-27

Reviewed: one index per filterable column (timestamp, user_id, action_type, resource_type, status,
category, severity, error_type, fingerprint, request_id), a unique event_id (idempotent replays), and
(timestamp DESC, id DESC) for the default order and keyset paging. metadata is JSONB on PostgreSQL.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_audit_logs"
down_revision = "0001_users_and_roles"
branch_labels = None
depends_on = None

INDEXED = ("action_type", "category", "error_type", "fingerprint", "request_id", "resource_type", "severity",
           "status", "timestamp", "user_id")


def upgrade():
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("action_type", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("metadata", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                  nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_sensitive", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("error_type", sa.String(length=200), nullable=True),
        sa.Column("stack_trace", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("http_method", sa.String(length=10), nullable=True),
        sa.Column("path", sa.String(length=2048), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_audit_logs_user_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_logs_event_id")),
    )
    for column in INDEXED:
        op.create_index(op.f(f"ix_audit_logs_{column}"), "audit_logs", [column], unique=False)
    op.create_index("ix_audit_logs_timestamp_id", "audit_logs", [sa.text("timestamp DESC"), sa.text("id DESC")],
                    unique=False)


def downgrade():
    op.drop_index("ix_audit_logs_timestamp_id", table_name="audit_logs")
    for column in INDEXED:
        op.drop_index(op.f(f"ix_audit_logs_{column}"), table_name="audit_logs")
    op.drop_table("audit_logs")
