"""Each user's display time zone (an IANA name; existing users get UTC, as pages showed until now).

Revision ID: 0013_user_timezone
Revises: 0012_audit_saved_views
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_user_timezone"
down_revision = "0012_audit_saved_views"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"))


def downgrade():
    # A plain ALTER TABLE ... DROP COLUMN on both databases (SQLite 3.35+): a batch copy of the table would
    # drop the original users table, and with foreign keys on that deletes every user's API tokens.
    op.drop_column("users", "timezone")
