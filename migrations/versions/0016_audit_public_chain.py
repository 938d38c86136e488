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

PostgreSQL: the append-only triggers gain the erasure's exception (``ERASURE_FUNCTION`` below); ``audit_chain`` gets a
partial index of the erased links, which the pages and exports read to show "[erased]".
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


#: The append-only rule (0004, 0015) with the one exception an approved erasure needs: inside a transaction that ran
#: ``SET LOCAL audit_portal.erasure = 'on'`` (``integrity/erasure.py``), an UPDATE may change the personal columns of
#: ``audit_logs`` (username, IP address and user agent only to NULL) and the ``salts`` and ``erased`` of
#: ``audit_chain``, and nothing else. Without the switch every UPDATE is refused as before (but the ON DELETE SET NULL
#: of a deleted user).
ERASURE_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
DECLARE
    tbl text := (SELECT relname FROM pg_class WHERE oid = coalesce(pg_partition_root(TG_RELID), TG_RELID));
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION '% is append-only: TRUNCATE refused', tbl USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF current_setting('audit_portal.purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '% is append-only: DELETE refused (only the retention purge may delete)', tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF tbl = 'audit_logs' AND NEW.user_id IS NULL AND OLD.user_id IS NOT NULL
       AND (to_jsonb(NEW) - 'user_id') = (to_jsonb(OLD) - 'user_id') THEN
        RETURN NEW;  -- ON DELETE SET NULL of a deleted user
    END IF;
    IF current_setting('audit_portal.erasure', true) = 'on' THEN
        -- (nested IFs: PL/pgSQL reads every field an expression names, and each table has its own)
        IF tbl = 'audit_logs' THEN
            IF (to_jsonb(NEW) - ARRAY['username', 'ip_address', 'user_agent', 'description', 'metadata'])
                   = (to_jsonb(OLD) - ARRAY['username', 'ip_address', 'user_agent', 'description', 'metadata'])
               AND (NEW.username IS NULL OR NEW.username = OLD.username)
               AND (NEW.ip_address IS NULL OR NEW.ip_address = OLD.ip_address)
               AND (NEW.user_agent IS NULL OR NEW.user_agent = OLD.user_agent) THEN
                RETURN NEW;  -- an approved erasure
            END IF;
        ELSIF (to_jsonb(NEW) - ARRAY['salts', 'erased']) = (to_jsonb(OLD) - ARRAY['salts', 'erased']) THEN
            RETURN NEW;  -- audit_chain: the erasure's commitments replace the salts
        END IF;
        RAISE EXCEPTION '% is append-only: UPDATE refused (an erasure may change only the personal columns)', tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION '% is append-only: UPDATE refused', tbl USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
#: 0015's function, which the downgrade puts back.
PREVIOUS_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
DECLARE
    tbl text := (SELECT relname FROM pg_class WHERE oid = coalesce(pg_partition_root(TG_RELID), TG_RELID));
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION '% is append-only: TRUNCATE refused', tbl USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF current_setting('audit_portal.purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '% is append-only: DELETE refused (only the retention purge may delete)', tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF tbl = 'audit_logs' AND NEW.user_id IS NULL AND OLD.user_id IS NOT NULL
       AND (to_jsonb(NEW) - 'user_id') = (to_jsonb(OLD) - 'user_id') THEN
        RETURN NEW;  -- ON DELETE SET NULL of a deleted user
    END IF;
    RAISE EXCEPTION '% is append-only: UPDATE refused', tbl USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
ERASED_WHERE = sa.text("erased IS NOT NULL")


def _has_triggers() -> bool:
    """The append-only function exists (PostgreSQL databases made by the migrations; SQLite has no triggers)."""
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and bool(
        bind.execute(sa.text("SELECT to_regproc('audit_logs_append_only') IS NOT NULL")).scalar())


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
    op.create_index("ix_audit_chain_erased", "audit_chain", ["audit_log_id"], postgresql_where=ERASED_WHERE,
                    sqlite_where=ERASED_WHERE)
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
    if _has_triggers():
        op.execute(ERASURE_FUNCTION)


def downgrade():
    if _has_triggers():
        op.execute(PREVIOUS_FUNCTION)
    op.drop_table("audit_erasure_requests")
    op.drop_table("audit_legal_holds")
    op.drop_table("audit_purges")
    op.drop_table("audit_digests")
    op.drop_index("ix_audit_chain_erased", table_name="audit_chain")
    with op.batch_alter_table("audit_chain") as batch:
        for column in ("erased", "salts", "category", "event_timestamp", "public_hash", "row_hash"):
            batch.drop_column(column)
