"""The links' unique index on ``audit_log_id`` also carries ``seq`` (PostgreSQL).

Revision ID: 0018_audit_chain_id_include_seq
Revises: 0017_audit_outbox
Create Date: 2026-12-07

The retention purge proves that a month may be dropped whole by joining the month's ids to their links and reading
each link's position (``integrity/purge_plan.py``). With ``seq`` in the index (``UNIQUE (audit_log_id) INCLUDE
(seq)``) that join reads the index alone instead of the links' wide rows: at 1,330,000 events, a month of 312,000
took 544 ms, 58 ms with it (in-process; docs/performance.md, "Retention"). The constraint keeps its name and its
column. The new index is built ``CONCURRENTLY`` (outside a transaction, so sealing and the chain's readers go on
meanwhile; about 0.7 s per million links here), then takes the constraint's place in a short transaction
(``ADD CONSTRAINT ... USING INDEX``). SQLite keeps the plain unique index (its purge deletes in batches).
"""
from alembic import op

revision = "0018_audit_chain_id_include_seq"
down_revision = "0017_audit_outbox"
branch_labels = None
depends_on = None

NAME = "uq_audit_chain_audit_log_id"
BUILDING = "uq_audit_chain_audit_log_id_building"


def _replace(include: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BUILDING}")  # left by an interrupted run
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {BUILDING} ON audit_chain (audit_log_id){include}")
    op.execute(f"ALTER TABLE audit_chain DROP CONSTRAINT {NAME}, ADD CONSTRAINT {NAME} UNIQUE USING INDEX {BUILDING}")


def upgrade():
    _replace(" INCLUDE (seq)")


def downgrade():
    _replace("")
