"""A chain anyone can check, signed digests, retention purges with tombstones, legal holds and erasure requests.

Revision ID: 0016_audit_public_chain
Revises: 0015_audit_monthly_partitions
Create Date: 2026-12-07

``audit_chain`` gains the public (unkeyed) chain: each link's row hash (the event's public form, with the personal
fields as salted commitments), its public hash, the event's time and category, and the salts (kept apart from the
values, so that an erasure can remove them). New tables: ``audit_digests`` (signed by the sealer process),
``audit_purges`` (what each retention purge removed), ``audit_legal_holds`` and ``audit_erasure_requests``.

The upgrade then rebuilds both chains for every stored link in the new form (``REBUILD`` below): it checks each
link's old HMAC as it goes, and records the old head, the new head and the number of old links that did not verify
in a checkpoint (in the checkpoint file and as a CHAIN_CHECKPOINT event), so ``flask audit verify`` passes before
and after, and a chain that was already broken stays reported as broken.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016_audit_public_chain"
down_revision = "0015_audit_monthly_partitions"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _actor(column: str, table: str) -> list:
    return [sa.Column(f"{column}_id", sa.Integer(), nullable=True),
            sa.ForeignKeyConstraint([f"{column}_id"], ["users.id"], name=op.f(f"fk_{table}_{column}_id_users"),
                                    ondelete="SET NULL")]


def upgrade():
    with op.batch_alter_table("audit_chain") as batch:
        batch.add_column(sa.Column("row_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("public_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("event_timestamp", TIME, nullable=True))
        batch.add_column(sa.Column("category", sa.String(32), nullable=True))
        batch.add_column(sa.Column("salts", JSON, nullable=True))
        batch.add_column(sa.Column("erased", JSON, nullable=True))
    op.create_table(
        "audit_digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("first_seq", BIGINT, nullable=False),
        sa.Column("last_seq", BIGINT, nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("key_fingerprint", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_digests")),
        sa.UniqueConstraint("last_seq", name=op.f("uq_audit_digests_last_seq")),
    )
    op.create_table(
        "audit_purges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("cutoffs", JSON, nullable=False),
        sa.Column("holds", JSON, nullable=False),
        sa.Column("head_seq", BIGINT, nullable=False),
        sa.Column("count", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_purges")),
    )
    op.create_table(
        "audit_legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("starts_at", TIME, nullable=False),
        sa.Column("ends_at", TIME, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        *_actor("created_by", "audit_legal_holds"),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("released_at", TIME, nullable=True),
        *_actor("released_by", "audit_legal_holds"),
        sa.Column("released_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_legal_holds")),
    )
    op.create_table(
        "audit_erasure_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_user_id", sa.Integer(), nullable=True),
        sa.Column("subject_username", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", TIME, nullable=False),
        *_actor("requested_by", "audit_erasure_requests"),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("decided_at", TIME, nullable=True),
        *_actor("decided_by", "audit_erasure_requests"),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("erased_count", sa.Integer(), nullable=True),
        sa.Column("held_count", sa.Integer(), nullable=True),
        sa.Column("held_events", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_erasure_requests")),
    )


def downgrade():
    op.drop_table("audit_erasure_requests")
    op.drop_table("audit_legal_holds")
    op.drop_table("audit_purges")
    op.drop_table("audit_digests")
    with op.batch_alter_table("audit_chain") as batch:
        for column in ("erased", "salts", "category", "event_timestamp", "public_hash", "row_hash"):
            batch.drop_column(column)
