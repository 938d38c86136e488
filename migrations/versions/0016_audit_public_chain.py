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
import hmac
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from flask import current_app
from sqlalchemy.dialects import postgresql

from audit_portal.audit.integrity import canonical as form
from audit_portal.audit.integrity.checkpoints import CHECKPOINT_FILE
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.inserts import insert_events

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
        sa.Column("mac", sa.String(64), nullable=True),
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
    upgrade_data()
    if _has_triggers():
        op.execute(ERASURE_FUNCTION)


BATCH = 5000


def _v1_canonical(values: dict, user_id) -> bytes:
    """The old chain's canonical form of a row (before this migration): every column, ``user_id`` as sealed, times
    as UTC ISO text with microseconds, JSON with sorted keys (frozen here: the old format does not change)."""
    data = dict(values)
    data["user_id"] = user_id
    for name in ("timestamp",):
        if isinstance(data[name], datetime):
            data[name] = data[name].astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def v1_link_hash(key: bytes, prev: str, values: dict, user_id) -> str:
    return hmac.digest(key, prev.encode() + b"|" + _v1_canonical(values, user_id), "sha256").hex()


def _utc(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def rechain(connection, key: bytes) -> dict | None:
    """Rebuild every link in the new form, checking the old HMAC of each as it goes. Returns the checkpoint to
    record (None for an empty chain)."""
    logs = sa.Table("audit_logs", sa.MetaData(), autoload_with=connection)
    chain = sa.Table("audit_chain", sa.MetaData(), autoload_with=connection)
    columns = [c.name for c in logs.columns]
    last_seq, old_prev, new_prev, public_prev = None, None, None, form.GENESIS
    old_head = None
    problems = 0
    while True:
        query = sa.select(chain.c.seq, chain.c.user_id, chain.c.prev_hash, chain.c.link_hash,
                          *[logs.c[name].label(f"e_{name}") for name in columns]) \
            .select_from(chain.outerjoin(logs, logs.c.id == chain.c.audit_log_id)).order_by(chain.c.seq).limit(BATCH)
        if last_seq is not None:
            query = query.where(chain.c.seq > last_seq)
        rows = connection.execute(query).all()
        if not rows:
            break
        updates = []
        for row in rows:
            m = row._mapping
            values = {name: m[f"e_{name}"] for name in columns}
            values["timestamp"] = _utc(values["timestamp"])
            if old_prev is None:  # the first link: genesis, or a legacy purge's cut (kept as the keyed anchor)
                old_prev = new_prev = m["prev_hash"]
            if m["prev_hash"] != old_prev:
                problems += 1
            if values["id"] is None:
                problems += 1  # deleted before this migration: the new chain keeps reporting it
                update = {"row_hash": None, "event_timestamp": None, "category": None, "salts": None}
            else:
                if not hmac.compare_digest(v1_link_hash(key, m["prev_hash"], values, m["user_id"]), m["link_hash"]):
                    problems += 1
                salts = form.new_salts()
                canonical = {name: form.iso(value) if isinstance(value, datetime) else value
                             for name, value in values.items()}
                canonical["user_id"] = m["user_id"]
                digest = form.row_hash(form.public_form(canonical, salts))
                update = {"row_hash": digest, "event_timestamp": values["timestamp"], "category": values["category"],
                          "salts": salts}
            material = form.material(m["seq"], update["event_timestamp"], update["category"], update["row_hash"])
            update.update(seq=m["seq"], prev_hash=new_prev, link_hash=form.hmac_link(key, new_prev, material),
                          public_hash=form.public_link(public_prev, material))
            updates.append(update)
            old_prev, old_head = m["link_hash"], m["link_hash"]
            new_prev, public_prev = update["link_hash"], update["public_hash"]
            last_seq = m["seq"]
        _write(connection, chain, updates)
    if last_seq is None:
        return _empty_chain_point(connection, logs)
    return {"seq": last_seq, "hash": new_prev, "old_hash": old_head, "old_problems": problems}


def _empty_chain_point(connection, logs) -> dict | None:
    """A chain that a legacy purge emptied: the rebuild point sits at its cut (the new chain continues from there,
    and the cut counts only when recorded before this point)."""
    cuts = []
    for (metadata,) in connection.execute(sa.select(logs.c["metadata"]).where(logs.c.action_type == "RETENTION_PURGE")):
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        cut = metadata.get("chain_cut") if isinstance(metadata, dict) else None
        if isinstance(cut, dict) and isinstance(cut.get("seq"), int) and cut.get("hash"):
            cuts.append(cut)
    if not cuts:
        return None
    cut = max(cuts, key=lambda c: c["seq"])
    return {"seq": cut["seq"], "hash": cut["hash"], "old_hash": cut["hash"], "old_problems": 0}


def _write(connection, chain, updates: list[dict]) -> None:
    if connection.dialect.name == "postgresql":
        payload = json.dumps(updates, default=lambda v: v.isoformat())
        connection.exec_driver_sql(
            "UPDATE audit_chain c SET prev_hash = v.prev_hash, link_hash = v.link_hash, public_hash = v.public_hash, "
            "row_hash = v.row_hash, event_timestamp = v.event_timestamp, category = v.category, salts = v.salts "
            "FROM json_populate_recordset(NULL::audit_chain, %s) v WHERE c.seq = v.seq", (payload,))
        return
    statement = chain.update().where(chain.c.seq == sa.bindparam("b_seq")).values(
        **{name: sa.bindparam(f"b_{name}") for name in ("prev_hash", "link_hash", "public_hash", "row_hash",
                                                         "event_timestamp", "category", "salts")})
    connection.execute(statement, [{f"b_{k}": v for k, v in u.items()} for u in updates])


def _record(connection, point: dict) -> None:
    """The rebuild's checkpoint: a line in the checkpoint file and a CHAIN_CHECKPOINT event."""
    now = datetime.now(UTC)
    line = {"seq": point["seq"], "hash": point["hash"], "at": now.isoformat(),
            "rechained": {"old_hash": point["old_hash"], "old_problems": point["old_problems"]}}
    path = Path(current_app.config["AUDIT_DATA_DIR"]) / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    problems = point["old_problems"]
    event = build_event(ActionType.CHAIN_CHECKPOINT, ResourceType.AUDIT_LOG, str(point["seq"]),
                        f"Audit chain rebuilt in its new form at link {point['seq']} (migration 0016)"
                        + (f": {problems} old link(s) did not verify" if problems else ""),
                        timestamp=now, metadata={"seq": point["seq"], "hash": point["hash"],
                                                 "rechained": line["rechained"]})
    insert_events(connection, [event])


def _chain_trigger(connection, state: str) -> None:
    """PostgreSQL: the append-only trigger of audit_chain off while the chain is rebuilt (in this transaction)."""
    if connection.dialect.name == "postgresql" and connection.execute(sa.text(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'audit_chain_append_only'")).first():
        connection.exec_driver_sql(f"ALTER TABLE audit_chain {state} TRIGGER audit_chain_append_only")


def upgrade_data():
    connection = op.get_bind()
    _chain_trigger(connection, "DISABLE")
    point = rechain(connection, current_app.config["AUDIT_HMAC_KEY"].encode())
    _chain_trigger(connection, "ENABLE")
    if point is not None:
        _record(connection, point)


def downgrade_data(connection, key: bytes) -> None:
    """Give the chain back its old form (HMAC over every column): recomputed from the rows as they are now, after
    the new chain has been checked by ``flask audit verify`` (run it first: this rewrite would carry over any
    change made since). Refused after a purge of the new form (``_refuse_lossy_downgrade``)."""
    logs = sa.Table("audit_logs", sa.MetaData(), autoload_with=connection)
    chain = sa.Table("audit_chain", sa.MetaData(), autoload_with=connection)
    columns = [c.name for c in logs.columns]
    last_seq, prev = None, None
    while True:
        query = sa.select(chain.c.seq, chain.c.user_id, chain.c.prev_hash, *[logs.c[name] for name in columns]) \
            .select_from(chain.join(logs, logs.c.id == chain.c.audit_log_id)).order_by(chain.c.seq).limit(BATCH)
        if last_seq is not None:
            query = query.where(chain.c.seq > last_seq)
        rows = connection.execute(query).all()
        if not rows:
            break
        updates = []
        for row in rows:
            m = row._mapping
            values = {name: m[logs.c[name]] for name in columns}
            values["timestamp"] = _utc(values["timestamp"])
            prev = m[chain.c.prev_hash] if prev is None else prev
            digest = v1_link_hash(key, prev, values, m[chain.c.user_id])
            updates.append({"b_seq": m[chain.c.seq], "b_prev_hash": prev, "b_link_hash": digest})
            prev, last_seq = digest, m[chain.c.seq]
        connection.execute(chain.update().where(chain.c.seq == sa.bindparam("b_seq")).values(
            prev_hash=sa.bindparam("b_prev_hash"), link_hash=sa.bindparam("b_link_hash")), updates)


def _refuse_lossy_downgrade(connection) -> None:
    """The old chain has no tombstones: after a purge of this form (links whose events are gone) its positions would
    have holes that the old verification reports as deletions. Refuse rather than leave a chain that fails."""
    purged = connection.execute(sa.text("SELECT count(*) FROM audit_purges")).scalar()
    orphans = connection.execute(sa.text(
        "SELECT count(*) FROM audit_chain c WHERE NOT EXISTS (SELECT 1 FROM audit_logs l WHERE l.id = c.audit_log_id)"
    )).scalar()
    if purged or orphans:
        raise RuntimeError(f"Refusing to downgrade below 0016: {purged} retention purge(s) of the new form and "
                           f"{orphans} chain link(s) without their event (tombstones) cannot be expressed in the old "
                           "chain. Restore a backup taken before the upgrade instead.")


def downgrade():
    connection = op.get_bind()
    _refuse_lossy_downgrade(connection)
    _chain_trigger(connection, "DISABLE")
    downgrade_data(connection, current_app.config["AUDIT_HMAC_KEY"].encode())
    _chain_trigger(connection, "ENABLE")
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
