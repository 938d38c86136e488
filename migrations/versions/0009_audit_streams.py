"""Stream destinations: where the audit trail is sent (syslog, webhook, file) and how far delivery has come.

Revision ID: 0009_audit_streams
Revises: 0008_audit_error_rollup
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_audit_streams"
down_revision = "0008_audit_error_rollup"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "audit_streams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2048), nullable=True),
        sa.Column("path", sa.String(1024), nullable=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=True),
        sa.Column("ca_file", sa.String(1024), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("cursor_seq", ID, nullable=False),
        sa.Column("resend_seq", ID, nullable=False),
        sa.Column("pending_delivery_id", sa.String(36), nullable=True),
        sa.Column("pending_upto_seq", ID, nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_delivery_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_streams")),
        sa.UniqueConstraint("name", name=op.f("uq_audit_streams_name")),
    )


def downgrade():
    op.drop_table("audit_streams")
