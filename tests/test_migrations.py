"""``flask db upgrade`` builds the schema the models describe, on SQLite and on PostgreSQL."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text

from audit_portal import create_app
from audit_portal.config import DevelopmentConfig
from audit_portal.database import include_object
from audit_portal.extensions import db

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("m0016", ROOT / "migrations/versions/0016_audit_public_chain.py")
m0016 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(m0016)
DEV_KEY = DevelopmentConfig.AUDIT_HMAC_KEY.encode()


def seal_the_old_way(url: str, key: bytes = DEV_KEY) -> str:
    """Chain every event as the sealer did before migration 0016 (HMAC over every column); returns the head."""
    engine = create_engine(url)
    logs = sa.Table("audit_logs", sa.MetaData(), autoload_with=engine)
    prev = "0" * 64
    with engine.begin() as connection:
        rows = connection.execute(sa.select(logs).order_by(logs.c.id)).all()
        links = []
        for seq, row in enumerate(rows, start=1):
            values = dict(row._mapping)
            values["timestamp"] = m0016._utc(values["timestamp"])
            digest = m0016.v1_link_hash(key, prev, values, values["user_id"])
            links.append({"seq": seq, "audit_log_id": values["id"], "user_id": values["user_id"], "prev_hash": prev,
                          "link_hash": digest, "sealed_at": values["timestamp"], "late": False})
            prev = digest
        connection.execute(sa.text("INSERT INTO audit_chain (seq, audit_log_id, user_id, prev_hash, link_hash, "
                                   "sealed_at, late) VALUES (:seq, :audit_log_id, :user_id, :prev_hash, :link_hash, "
                                   ":sealed_at, :late)"), links)
    engine.dispose()
    return prev


def old_chain_problems(url: str, key: bytes = DEV_KEY) -> int:
    """How many links of an old-form chain do not verify (recomputed from the rows)."""
    engine = create_engine(url)
    logs = sa.Table("audit_logs", sa.MetaData(), autoload_with=engine)
    chain = sa.Table("audit_chain", sa.MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(chain.c.prev_hash, chain.c.link_hash, chain.c.user_id.label("sealed"),
                                            logs).join(logs, logs.c.id == chain.c.audit_log_id)
                                  .order_by(chain.c.seq)).all()
    engine.dispose()
    problems, prev = 0, "0" * 64
    for row in rows:
        m = row._mapping
        values = {c.name: m[logs.c[c.name]] for c in logs.columns}
        values["timestamp"] = m0016._utc(values["timestamp"])
        problems += m[chain.c.prev_hash] != prev
        problems += m0016.v1_link_hash(key, m[chain.c.prev_hash], values, m["sealed"]) != m[chain.c.link_hash]
        prev = m[chain.c.link_hash]
    return problems


def drop_everything(url: str) -> None:
    """Empty the database, including tables the models do not know (alembic_version)."""
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def empty_database(database_url):
    drop_everything(database_url)
    yield database_url
    drop_everything(database_url)


def flask(*args, database_url: str, data_dir: Path) -> subprocess.CompletedProcess:
    """Run the real command line, as the README does."""
    env = {**os.environ, "FLASK_APP": "wsgi", "APP_ENV": "development", "DATABASE_URL": database_url,
           "AUDIT_DATA_DIR": str(data_dir)}
    env.pop("SQLALCHEMY_DATABASE_URI", None)
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_upgrade_builds_exactly_the_models_schema(empty_database, tmp_path):
    result = flask("db", "upgrade", database_url=empty_database, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    # The metadata autogenerate would see: every model the application imports.
    app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": empty_database,
                      "AUDIT_DATA_DIR": str(tmp_path)})
    try:
        with app.app_context(), db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                                   "compare_server_default": True,
                                                                   "include_object": include_object})
            diff = compare_metadata(context, app.extensions["migrate"].db.metadata)
            tables = set(inspect(connection).get_table_names())
            roles = dict(connection.execute(text("SELECT name, description FROM roles")).all())
    finally:
        app.extensions["audit_writer"].close()
        with app.app_context():
            db.engine.dispose()
    assert diff == []
    assert {"alembic_version", "roles", "users", "audit_logs"} <= tables
    assert set(roles) == {"admin", "user"}


def test_the_rollup_migration_counts_the_errors_already_in_the_log(empty_database, tmp_path):
    """0008 creates the error dashboard's rollup and fills it from the events stored before it existed."""
    from datetime import timedelta

    from sqlalchemy import insert

    from audit_portal.audit.record.enums import ActionType, ResourceType, Status
    from audit_portal.audit.record.events import build_event
    from audit_portal.audit.record.models import AuditLog
    from audit_portal.timeutil import utcnow

    result = flask("db", "upgrade", "0007_audit_partial_error_indexes", database_url=empty_database, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    now = utcnow()
    events = [build_event(ActionType.ERROR_OCCURRED, ResourceType.SYSTEM, None, "boom", timestamp=now - timedelta(days=d),
                          status=status, severity=severity, error_type=etype, fingerprint=fingerprint)
              for d, status, severity, etype, fingerprint in [
                  (0, Status.ERROR, "ERROR", "ValueError", "a" * 16), (0, Status.ERROR, "ERROR", "ValueError", "a" * 16),
                  (3, Status.ERROR, "CRITICAL", "MemoryError", "b" * 16), (3, Status.ERROR, None, None, None),
                  (3, Status.FAILURE, None, None, None)]]
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(insert(AuditLog.__table__), events)  # plain SQL: the app's insert path needs 0008

    result = flask("db", "upgrade", database_url=empty_database, data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT day, fingerprint, error_type, severity, occurrences "
                                       "FROM audit_error_rollup ORDER BY day, fingerprint")).all()
    engine.dispose()
    today, three_days_ago = now.date(), (now - timedelta(days=3)).date()
    assert [(str(day)[:10], *rest) for day, *rest in rows] == [
        (str(three_days_ago), "", "", "", 1),
        (str(three_days_ago), "b" * 16, "MemoryError", "CRITICAL", 1),
        (str(today), "a" * 16, "ValueError", "ERROR", 2),
    ]


def test_the_user_timezone_migration_gives_existing_users_utc_and_downgrades(empty_database, tmp_path):
    """0013 adds users.timezone (UTC for the users already there); its downgrade drops only that column,
    keeping the users and what hangs off them (a table copy on SQLite would delete their API tokens)."""
    result = flask("db", "upgrade", "0012_audit_saved_views", database_url=empty_database, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO users (id, username, email, full_name, password_hash, role_id, status, is_active,"
            " session_version, created_at, updated_at) SELECT 7, 'old', 'old@example.com', '', 'x', id, 'active',"
            " :yes, 1, :now, :now FROM roles WHERE name = 'user'"), {"yes": True, "now": "2026-01-01 00:00:00+00:00"})
        connection.execute(text("INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at)"
                                " VALUES (7, 'script', 'ap_x', :hash, :now)"),
                           {"hash": "0" * 64, "now": "2026-01-01 00:00:00+00:00"})

    def user_columns() -> set[str]:
        with engine.connect() as connection:
            return {column["name"] for column in inspect(connection).get_columns("users")}

    assert flask("db", "upgrade", database_url=empty_database, data_dir=tmp_path).returncode == 0
    with engine.connect() as connection:
        assert connection.execute(text("SELECT timezone FROM users WHERE id = 7")).scalar() == "UTC"

    result = flask("db", "downgrade", "0012_audit_saved_views", database_url=empty_database, data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "timezone" not in user_columns()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT username FROM users")).scalars().all() == ["old"]
        assert connection.execute(text("SELECT count(*) FROM api_tokens")).scalar() == 1
    assert flask("db", "upgrade", database_url=empty_database, data_dir=tmp_path).returncode == 0
    assert "timezone" in user_columns()
    engine.dispose()


#: The checkpoint event migration 0016 adds (it records the chain's rebuild): not one of the rows compared.
_NOT_THE_REBUILD = "NOT (action_type = 'CHAIN_CHECKPOINT' AND description LIKE '%migration 0016%')"


def _rows_digest(engine) -> tuple[int, str]:
    """How many audit rows, and an md5 of every column of every row in id order (but 0016's checkpoint)."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.execute(text(f"SELECT * FROM audit_logs WHERE {_NOT_THE_REBUILD} ORDER BY id")).all()
            return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()
        return connection.execute(text(
            "SELECT count(*), md5(coalesce(string_agg(row_to_json(t)::text, '|' ORDER BY id), '')) FROM audit_logs t "
            f"WHERE {_NOT_THE_REBUILD}")).one()


@pytest.mark.postgres_only
@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="partitions are PostgreSQL's")
def test_the_partition_migration_keeps_every_row_and_the_chain(empty_database, tmp_path):
    """0015 turns a seeded audit_logs into monthly partitions: every row kept as it was, the chain verifies
    before and after, the append-only triggers guard every partition; the downgrade gives one table back."""
    def run(*args):
        result = flask(*args, database_url=empty_database, data_dir=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run("db", "upgrade", "0014_audit_search_indexes")
    run("demo", "seed", "--count", "400", "--days", "150")
    engine = create_engine(empty_database)
    with engine.begin() as connection:  # a clock far ahead wrote one event 400 days from now: its month is made too
        assert connection.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                       "WHERE conname = 'pk_audit_logs'")).scalar() == "PRIMARY KEY (id)"
        connection.execute(text(
            "INSERT INTO audit_logs (event_id, timestamp, action_type, resource_type, category, description, status, "
            "is_sensitive) SELECT gen_random_uuid()::text, now() + interval '400 days', action_type, resource_type, "
            "category, 'from the future', status, is_sensitive FROM audit_logs ORDER BY id LIMIT 1"))
    seal_the_old_way(empty_database)  # as the sealer of that time did: this code seals in the form of 0016
    assert old_chain_problems(empty_database) == 0
    before = _rows_digest(engine)

    run("db", "upgrade")

    assert _rows_digest(engine) == before
    with engine.connect() as connection:
        assert connection.execute(text("SELECT relkind FROM pg_class WHERE relname = 'audit_logs'")).scalar() == "p"
        names = connection.execute(text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit_logs'::regclass ORDER BY 1")).scalars().all()
        oldest = connection.execute(text("SELECT min(timestamp) FROM audit_logs")).scalar()
    assert len(names) >= 5 + 3 and names[0] == f"audit_logs_{oldest:%Y_%m}"  # 150 days back, 3 months ahead
    assert "OK: the audit chain is intact" in run("audit", "verify")
    with engine.connect() as connection:
        filled = [n for n in names if connection.execute(text(f"SELECT count(*) FROM {n}")).scalar()]
    assert len(filled) >= 5
    for name in names:
        statements = [(f"TRUNCATE {name}", "TRUNCATE refused")]
        if name in filled:
            statements += [(f"UPDATE {name} SET description = 'x'", "UPDATE refused"),
                           (f"DELETE FROM {name}", "DELETE refused")]
        for statement, refused in statements:
            with engine.begin() as connection, pytest.raises(Exception, match=f"audit_logs is append-only: {refused}"):
                connection.execute(text(statement))
    after = _rows_digest(engine)

    run("db", "downgrade", "0014_audit_search_indexes")

    assert _rows_digest(engine) == after
    with engine.connect() as connection:
        assert connection.execute(text("SELECT relkind FROM pg_class WHERE relname = 'audit_logs'")).scalar() == "r"
    assert old_chain_problems(empty_database) == 0  # 0016's downgrade gave the chain its old form back
    engine.dispose()


def test_the_public_chain_migration_rebuilds_a_sealed_chain_that_then_verifies(empty_database, tmp_path):
    """0016 rebuilds an old chain in the new form: ``audit verify`` passes after it, each link has its public hash,
    row hash and salts, and the rebuild is a checkpoint (file and event) naming the old head; the downgrade gives
    the old form back."""
    def run(*args):
        result = flask(*args, database_url=empty_database, data_dir=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run("db", "upgrade", "0015_audit_monthly_partitions")
    run("demo", "seed", "--count", "300", "--days", "60")
    old_head = seal_the_old_way(empty_database)
    before = _rows_digest(engine := create_engine(empty_database))

    run("db", "upgrade")

    assert _rows_digest(engine) == before
    with engine.connect() as connection:
        unfilled = connection.execute(text("SELECT count(*) FROM audit_chain WHERE public_hash IS NULL "
                                           "OR row_hash IS NULL OR salts IS NULL")).scalar()
        assert connection.execute(text("SELECT count(*) FROM audit_chain")).scalar() == 300 and unfilled == 0
    [line] = [json.loads(x) for x in (tmp_path / "chain-checkpoints.ndjson").read_text().splitlines()]
    assert line["seq"] == 300 and line["rechained"] == {"old_hash": old_head, "old_problems": 0}
    output = run("audit", "verify")
    assert "OK: the audit chain is intact" in output

    run("db", "downgrade", "0015_audit_monthly_partitions")

    assert old_chain_problems(empty_database) == 0
    engine.dispose()


def test_the_public_chain_migration_keeps_reporting_an_old_chain_that_was_already_broken(empty_database, tmp_path):
    """An event edited before the upgrade is not laundered by the rebuild: ``audit verify`` names it afterwards."""
    flask("db", "upgrade", "0015_audit_monthly_partitions", database_url=empty_database, data_dir=tmp_path)
    flask("demo", "seed", "--count", "50", "--days", "10", database_url=empty_database, data_dir=tmp_path)
    seal_the_old_way(empty_database)
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL session_replication_role = replica"))  # as a superuser would
        connection.execute(text("UPDATE audit_logs SET description = 'edited' WHERE id = "
                                "(SELECT min(id) + 10 FROM audit_logs)"))
    engine.dispose()
    assert flask("db", "upgrade", database_url=empty_database, data_dir=tmp_path).returncode == 0

    result = flask("audit", "verify", database_url=empty_database, data_dir=tmp_path)

    assert result.returncode == 1
    assert "1 link(s) of the old chain did not verify" in result.stdout + result.stderr


@pytest.mark.postgres_only
@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="the outbox is PostgreSQL's")
def test_the_outbox_downgrade_moves_what_the_outbox_holds_into_the_log(empty_database, tmp_path):
    """0017's downgrade drops ``audit_outbox`` only after moving its events into ``audit_logs``: none is lost."""
    from audit_portal.audit.record.enums import ActionType, ResourceType
    from audit_portal.audit.record.events import build_event
    from audit_portal.audit.write import outbox
    from audit_portal.timeutil import utcnow

    assert flask("db", "upgrade", database_url=empty_database, data_dir=tmp_path).returncode == 0
    events = [build_event(ActionType.UPDATE, ResourceType.SETTING, i, f"waiting {i}", timestamp=utcnow())
              for i in range(3)]
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        for event in events:
            outbox.add(connection, event)

    result = flask("db", "downgrade", "0016_audit_public_chain", database_url=empty_database, data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    with engine.connect() as connection:
        stored = set(connection.scalars(text("SELECT event_id FROM audit_logs WHERE description LIKE 'waiting %'")))
        assert "audit_outbox" not in inspect(connection).get_table_names()
    engine.dispose()
    assert stored == {event["event_id"] for event in events}


@pytest.mark.postgres_only
@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="INCLUDE is PostgreSQL's")
def test_the_links_unique_index_carries_their_position_migrated_or_created(empty_database, tmp_path):
    """0018: the purge's plan reads a month's links from ``uq_audit_chain_audit_log_id`` alone, so it carries
    ``seq``; still unique; the downgrade gives the plain index back; a database made from the models has the same."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from audit_portal.audit.record.models import AuditChainLink

    def definition() -> str:
        engine = create_engine(empty_database)
        with engine.connect() as connection:
            found = connection.scalar(text("SELECT pg_get_indexdef('uq_audit_chain_audit_log_id'::regclass)"))
        engine.dispose()
        return found

    assert flask("db", "upgrade", database_url=empty_database, data_dir=tmp_path).returncode == 0
    assert definition().endswith("USING btree (audit_log_id) INCLUDE (seq)")
    assert "CREATE UNIQUE INDEX" in definition()
    assert flask("db", "downgrade", "0017_audit_outbox", database_url=empty_database, data_dir=tmp_path).returncode == 0
    assert definition().endswith("USING btree (audit_log_id)")
    created = str(CreateTable(AuditChainLink.__table__).compile(dialect=postgresql.dialect()))
    assert "CONSTRAINT uq_audit_chain_audit_log_id UNIQUE (audit_log_id) INCLUDE (seq)" in created
