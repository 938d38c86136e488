"""The error dashboard's rollup: ERROR events counted per UTC day, fingerprint, error type and severity.

Revision ID: 0008_audit_error_rollup
Revises: 0007_audit_partial_error_indexes
Create Date: 2026-11-27

At 10,000,000 events the dashboard aggregated about 1,000,000 error events for every page (about a second,
growing with the log; docs/scaling.md). ``audit_error_rollup`` holds one row per day, fingerprint, error type
and severity that occurred; the app keeps it in the same transaction as every insert (audit/rollup.py).
Empty strings stand for a missing fingerprint, error type or severity (they are part of the primary key).

The upgrade counts the existing ERROR events once, and adds two partial indexes of ERROR events, by time and by
user and time, for the views the rollup cannot answer. At 10,000,000 events (1,170,413 errors) the upgrade
took 4.4 s for the rollup and 2.4 s for the first index (the second was measured at 3,000,000 events: 0.7 s).
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_audit_error_rollup"
down_revision = "0007_audit_partial_error_indexes"
branch_labels = None
depends_on = None

ERROR_TYPE_MAX = 200

BACKFILL = """
INSERT INTO audit_error_rollup (day, fingerprint, error_type, severity, occurrences, first_seen, last_seen, latest_id)
SELECT {day}, coalesce(fingerprint, ''), coalesce(error_type, ''), coalesce(severity, ''),
       count(*), min("timestamp"), max("timestamp"), max(id)
FROM audit_logs WHERE status = 'ERROR'
GROUP BY 1, 2, 3, 4
"""
#: The UTC day of a row (SQLite stores UTC timestamps as text, and dates as YYYY-MM-DD).
DAY = {"postgresql": "(\"timestamp\" AT TIME ZONE 'UTC')::date", "sqlite": "substr(\"timestamp\", 1, 10)"}


def upgrade():
    op.create_table(
        "audit_error_rollup",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("error_type", sa.String(length=ERROR_TYPE_MAX), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("occurrences", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latest_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("day", "fingerprint", "error_type", "severity", name=op.f("pk_audit_error_rollup")),
    )
    op.create_index("ix_audit_error_rollup_fingerprint_day", "audit_error_rollup", ["fingerprint", "day"])
    op.execute(BACKFILL.format(day=DAY[op.get_bind().dialect.name]))
    # ERROR events by time, and by user and time: the dashboard's views the rollup cannot answer (a time of day
    # in the range, one user's errors) group them from these partial indexes (covering on PostgreSQL).
    for name, leading in (("ix_audit_logs_error_times", []), ("ix_audit_logs_user_errors", ["user_id"])):
        op.create_index(name, "audit_logs", [*leading, sa.text("timestamp DESC"), sa.text("id DESC")],
                        postgresql_where=sa.text("status = 'ERROR'"), sqlite_where=sa.text("status = 'ERROR'"),
                        postgresql_include=["fingerprint", "error_type", "severity"])


def downgrade():
    op.drop_index("ix_audit_logs_user_errors", table_name="audit_logs")
    op.drop_index("ix_audit_logs_error_times", table_name="audit_logs")
    op.drop_index("ix_audit_error_rollup_fingerprint_day", table_name="audit_error_rollup")
    op.drop_table("audit_error_rollup")
