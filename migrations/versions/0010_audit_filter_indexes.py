"""Indexes for the ip_address and username filters (EXPLAIN at 3,000,000 rows: docs/scaling.md).

Revision ID: 0010_audit_filter_indexes
Revises: 0009_audit_streams
Create Date: 2026-12-02

Without them the viewer's page (newest first, LIMIT 51) walked the timestamp index and filtered: fast for a
common address or name, but one that matches a few events read the whole table (0.5 s for an address, 1.1 s
for a name at 3,000,000 rows, growing with the log), and every bounded count was a sequential scan.

- (ip_address, timestamp DESC, id DESC), like the other filters (0005): a filtered page is an index scan that
  stops after one page, and the bounded count an index-only scan.
- ``username`` matches the actor's name OR the name a failed login typed, which no single index returns in
  order: PostgreSQL answers it with a BitmapOr of two indexes. (username, action_type, timestamp DESC, id DESC)
  serves the name alone, and with an action ("failed logins of admin": its count ANDed two large bitmaps,
  0.4 s, without the second column). On PostgreSQL, (metadata ->> 'attempted_username', timestamp DESC, id
  DESC), partial: only failed and throttled logins carry the typed name, so other events cost it nothing.
- On PostgreSQL, statistics on the typed name: the planner keeps none for a partial index's expression, and
  took every name for 0.5% of the log, so a rare name was searched by walking the whole table.

SQLite gets the b-tree indexes; its ``username`` filter reads the rows in time order, as its ``search`` does.
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_audit_filter_indexes"
down_revision = "0009_audit_streams"
branch_labels = None
depends_on = None

INDEXES = {"ix_audit_logs_ip_address_timestamp": ("ip_address",),
           "ix_audit_logs_username_action_type_timestamp": ("username", "action_type")}
ATTEMPTED = "(metadata ->> 'attempted_username')"


def upgrade():
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_logs", [*columns, sa.text("timestamp DESC"), sa.text("id DESC")], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_audit_logs_attempted_username ON audit_logs ({ATTEMPTED}, timestamp DESC, "
                   f"id DESC) WHERE {ATTEMPTED} IS NOT NULL")
        op.execute(f"CREATE STATISTICS st_audit_logs_attempted_username ON ({ATTEMPTED}) FROM audit_logs")
        op.execute("ANALYZE audit_logs")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_audit_logs_attempted_username")
        op.execute("DROP INDEX IF EXISTS ix_audit_logs_attempted_username")
    for name in INDEXES:
        op.drop_index(name, table_name="audit_logs")
