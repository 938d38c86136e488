"""audit_logs becomes a table partitioned by month on PostgreSQL (``PARTITION BY RANGE (timestamp)``).

Revision ID: 0015_audit_monthly_partitions
Revises: 0014_audit_search_indexes
Create Date: 2026-12-07

Retention then drops a month as a table instead of deleting it row by row (``audit_portal/audit/record/
partitions.py``, docs/scaling.md). A table cannot be turned into a partitioned one in place, so the upgrade
builds the partitioned table beside the old one and copies every row, under an ACCESS EXCLUSIVE lock: events
wait (the writer queues and spools them) while it runs. It reads what the database has rather than what this
file expects: every index, extended statistics object and foreign key of the old table is built again as it
was (the primary key and the unique event id gain the partition key: ``(id, timestamp)``, ``(event_id,
timestamp)``), and the append-only triggers come back on the new table and, for TRUNCATE, on every partition.
The id sequence moves to the new table, so ids keep counting. One partition per month from the oldest event's
to three months ahead. The hash chain links rows by id, which do not change: it verifies before and after.

At 3,000,000 rows the upgrade took about a minute on the benchmark machine (docs/scaling.md); plan a window
for a large log.

SQLite: nothing (one table, as before). The downgrade copies the rows back into one table.
"""
from datetime import UTC, date, datetime

from alembic import op
from sqlalchemy import text

revision = "0015_audit_monthly_partitions"
down_revision = "0014_audit_search_indexes"
branch_labels = None
depends_on = None

TABLE = "audit_logs"
OLD = "audit_logs_unpartitioned"
AHEAD_MONTHS = 3
TRUNCATE_TRIGGER = ("CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()")
ROW_TRIGGER = ("CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs "
               "FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only()")


#: The append-only rule, told which table a row trigger fires on by its partition tree's root: on a partition,
#: ``TG_TABLE_NAME`` is the partition's name (``audit_logs_2026_12``), and the exception for a deleted user's
#: ``ON DELETE SET NULL`` must still apply to every ``audit_logs`` row. Messages name the root table.
FUNCTION = """
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


def _next(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def _scalar(sql: str, **params):
    return op.get_bind().execute(text(sql), params).scalar()


def _rows(sql: str, **params):
    return op.get_bind().execute(text(sql), params).all()


def _relkind() -> str | None:
    return _scalar("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)", t=TABLE)


def _keep_definitions() -> dict:
    """What the old table has that the new one must have again, read from the catalog."""
    keys = ("pk_audit_logs", "uq_audit_logs_event_id")
    return {
        "indexes": [d for n, d in _rows("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = "
                                        "current_schema() AND tablename = :t", t=TABLE) if n not in keys],
        "statistics": [d for (d,) in _rows("SELECT pg_get_statisticsobjdef(oid) FROM pg_statistic_ext "
                                           "WHERE stxrelid = to_regclass(:t)", t=TABLE)],
        "foreign_keys": _rows("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                              "WHERE conrelid = to_regclass(:t) AND contype = 'f'", t=TABLE),
        "triggers": bool(_scalar("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(:t) "
                                 "AND tgname = 'audit_logs_append_only'", t=TABLE)),
        "sequence": _scalar("SELECT pg_get_serial_sequence(:t, 'id')", t=TABLE),
    }


def _rebuild(kept: dict, keys: tuple[str, str]) -> None:
    """Give the new ``audit_logs`` (rows copied) its keys, indexes, statistics, foreign keys and triggers."""
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT pk_audit_logs PRIMARY KEY ({keys[0]})")
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT uq_audit_logs_event_id UNIQUE ({keys[1]})")
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for definition in kept["indexes"]:
        op.execute(definition.replace(" ON ONLY ", " ON ", 1))
    for definition in kept["statistics"]:
        op.execute(definition)
    for name, definition in kept["foreign_keys"]:
        op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
    if kept["sequence"]:
        op.execute(f"ALTER SEQUENCE {kept['sequence']} OWNED BY {TABLE}.id")


def _set_aside(kept: dict) -> None:
    """Rename the old table out of the way, its index names freed for the new one (the caller has locked it)."""
    for definition in kept["indexes"]:
        name = definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
        op.execute(f"DROP INDEX {name}")
    for (definition,) in _rows("SELECT 'DROP STATISTICS ' || stxname FROM pg_statistic_ext "
                               "WHERE stxrelid = to_regclass(:t)", t=TABLE):
        op.execute(definition)
    op.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT uq_audit_logs_event_id")
    op.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT pk_audit_logs")
    op.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")


def upgrade():
    if op.get_bind().dialect.name != "postgresql" or _relkind() != "r":
        return
    op.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")  # no row arrives between reading the range and the copy
    kept = _keep_definitions()
    oldest = _scalar(f"SELECT min(timestamp) FROM {TABLE}")  # noqa: S608
    newest = _scalar(f"SELECT max(timestamp) FROM {TABLE}")  # noqa: S608 - a clock far ahead: its month too
    _set_aside(kept)
    op.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (timestamp)")
    now = datetime.now(UTC)
    month = date((oldest or now).astimezone(UTC).year, (oldest or now).astimezone(UTC).month, 1)
    last = date(now.year, now.month, 1)
    for _ in range(AHEAD_MONTHS):
        last = _next(last)
    if newest is not None:
        last = max(last, date(newest.astimezone(UTC).year, newest.astimezone(UTC).month, 1))
    months = []
    while month <= last:
        months.append(month)
        month = _next(month)
    for month in months:
        name = f"{TABLE}_{month.year:04d}_{month.month:02d}"
        op.execute(f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM ('{month.isoformat()} 00:00+00') "
                   f"TO ('{_next(month).isoformat()} 00:00+00')")
    op.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")  # noqa: S608
    _rebuild(kept, ("id, timestamp", "event_id, timestamp"))
    if kept["triggers"]:
        op.execute(FUNCTION)
        op.execute(ROW_TRIGGER)
        for table in [TABLE] + [f"{TABLE}_{m.year:04d}_{m.month:02d}" for m in months]:
            op.execute(TRUNCATE_TRIGGER.format(table=table))
    op.execute(f"DROP TABLE {OLD}")
    op.execute(f"ANALYZE {TABLE}")


def downgrade():
    if op.get_bind().dialect.name != "postgresql" or _relkind() != "p":
        return
    op.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    kept = _keep_definitions()
    _set_aside(kept)
    op.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")  # noqa: S608
    _rebuild(kept, ("id", "event_id"))
    if kept["triggers"]:
        op.execute(ROW_TRIGGER)
        op.execute(TRUNCATE_TRIGGER.format(table=TABLE))  # (the function, which also serves one table, stays)
    op.execute(f"DROP TABLE {OLD}")  # and its partitions
    op.execute(f"ANALYZE {TABLE}")
