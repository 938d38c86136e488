"""Indexes for the search language's IP ranges and path prefixes (EXPLAIN at 10,000,000 rows: docs/scaling.md).

Revision ID: 0014_audit_search_indexes
Revises: 0013_user_timezone
Create Date: 2026-12-07

PostgreSQL only. Without them, ``ip:<range>`` and ``path:<prefix>*`` pages walked the timestamp index and
filtered (fast while the range or prefix is common), and their bounded counts read the table until 10,001
matches: a cost that follows bound / share, and that reads the whole log for a range or prefix few events have.

- ``audit_inet(ip_address)``: the address as ``inet``, or NULL for text PostgreSQL cannot read as one (a scope
  id such as ``fe80::1%eth0``, which Python's ``ipaddress`` keeps, or any string a caller of ``log_audit``
  passed). A plain ``CAST(ip_address AS inet)`` fails on such a value: in an index it would make the insert of
  that event fail, and in a query it fails the whole page. The search language compares ranges through the
  same function (``search._in_network``), so that its expression is the index's.
- B-tree ``(audit_inet(ip_address)) INCLUDE (ip_address)``: PostgreSQL turns ``<<= range`` into a b-tree
  range (``>= network AND <= broadcast``), so a range's events are one index range; the included text column
  makes the bounded count an index-only scan (an expression alone is not enough for one). Not GiST
  (``inet_ops``): it answers only bitmap scans here, and a bitmap must collect every match before a count that
  stops at 10,001 can start.
- ``(path text_pattern_ops, timestamp DESC, id DESC) WHERE path IS NOT NULL``: a prefix is an index range
  (``text_pattern_ops`` serves ``LIKE 'prefix%'`` under any collation; the default operator class only under
  "C"), and an exact path a scan in the list's order that stops after one page. Only request and error events
  have a path; the others cost it nothing.

Negations (``-key:value``, ``NOT COALESCE(cond, false)``) get no index: they keep most of the log, and the
timestamp index with a filter already stops after one page. The indexes are built ``CONCURRENTLY`` (outside a
transaction), so a large log keeps taking events while they are built; a build that was interrupted leaves an
invalid index, which the next upgrade drops and builds again.

SQLite: nothing. Its IP ranges are evaluated in Python (``database.ip_in_network``) and its LIKE is
case-insensitive, so neither filter could use an index there; both read the rows in time order, as ``search``
does.
"""
from alembic import op

revision = "0014_audit_search_indexes"
down_revision = "0013_user_timezone"
branch_labels = None
depends_on = None

INET_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_inet(address text) RETURNS inet
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN address::inet;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$
"""
INDEXES = {
    "ix_audit_logs_ip_inet": "audit_logs (audit_inet(ip_address)) INCLUDE (ip_address)",
    "ix_audit_logs_path_timestamp": "audit_logs (path text_pattern_ops, timestamp DESC, id DESC) "
                                    "WHERE path IS NOT NULL",
}


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(INET_FUNCTION)
    with op.get_context().autocommit_block():
        for name, definition in INDEXES.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {definition}")
        op.execute("ANALYZE audit_logs")  # statistics on the expression, for the planner's estimate of a range


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute("DROP FUNCTION IF EXISTS audit_inet(text)")
