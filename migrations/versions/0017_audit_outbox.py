"""The transactional outbox of domain events.

Revision ID: 0017_audit_outbox
Revises: 0016_audit_public_chain
Create Date: 2026-12-07

``audit_outbox`` holds the domain events that committed with their change (one JSON payload each, no index, no key)
until the background writer moves them into ``audit_logs`` (``audit_portal/audit/write/outbox.py``). On SQLite the
table stays empty: the events go straight into ``audit_logs`` there.

The downgrade moves whatever the outbox still holds into ``audit_logs`` first, so that no event is lost.
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_audit_outbox"
down_revision = "0016_audit_public_chain"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("audit_outbox", sa.Column("payload", sa.JSON(), nullable=False))


def downgrade():
    from audit_portal.audit.write.outbox import drain

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        drain(bind)
    op.drop_table("audit_outbox")
