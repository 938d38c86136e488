"""The audit tables: the record (``audit_logs``), its hash chain (``audit_chain``) and the error rollup.

Application code never builds rows by hand; it calls the service::

    from audit_portal.audit import ActionType, ResourceType, log_audit

    log_audit(user.id, ActionType.UPDATE, ResourceType.SETTING, "theme",
              "Changed the theme", metadata={"old": "light", "new": "dark"})
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    and_,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from ...extensions import db
from ...timeutil import UTCDateTime, utcnow
from . import partitions

#: Bounded lengths; longer values are truncated (with a marker) when the event is built.
DESCRIPTION_MAX = 1000
USER_AGENT_MAX = 512
PATH_MAX = 2048
USERNAME_SNAPSHOT_MAX = 64
ERROR_TYPE_MAX = 200
STACK_TRACE_MAX = 64_000

#: JSONB on PostgreSQL, JSON (text) elsewhere.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
#: 64-bit ids on PostgreSQL; SQLite needs INTEGER for its rowid alias.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class AuditLog(db.Model):
    """One audit event. Append-only: no application code path updates or deletes a row
    (except the retention purge, which records that it ran)."""

    __tablename__ = "audit_logs"
    #: PostgreSQL: one partition per UTC month (``partitions.py``); SQLite: one table.
    __table_args__ = {"postgresql_partition_by": "RANGE (timestamp)"}

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    #: UUID set when the event is built; makes replays from the spool idempotent.
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    #: When the event happened (set by the app at that moment, not at insert time). UTC.
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The actor; NULL for anonymous requests, and after the user is deleted.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    #: The actor's username at the time, so the row stays readable after the user is gone.
    username: Mapped[str | None] = mapped_column(String(USERNAME_SNAPSHOT_MAX), nullable=True)
    action_type: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(32))
    #: The affected object's id, as a string (ids of every kind fit).
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Derived from action and resource when the event is built; stored so that it can be filtered by index.
    category: Mapped[str] = mapped_column(String(32))
    #: A sentence for humans; a failed login names the attempted username.
    description: Mapped[str] = mapped_column(String(DESCRIPTION_MAX), default="")
    #: Context, and ``{"old": ..., "new": ...}`` for changes. Secrets are redacted before storage.
    event_metadata: Mapped[dict | None] = mapped_column("metadata", JSONType, nullable=True)
    ip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    #: True for password changes, token operations, exports and other sensitive actions.
    is_sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    severity: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(ERROR_TYPE_MAX), nullable=True)
    stack_trace: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Hash of the error type and the innermost application frame; groups occurrences of one error.
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Shared by every event one HTTP request produced.
    request_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    http_method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    path: Mapped[str | None] = mapped_column(String(PATH_MAX), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)

    def __repr__(self) -> str:
        return f"<AuditLog {self.id} {self.action_type} {self.status}>"


#: Serves the default order (newest first), date ranges and keyset pagination over (timestamp, id).
Index("ix_audit_logs_timestamp_id", AuditLog.timestamp.desc(), AuditLog.id.desc())

#: Each filterable column leads an index that also holds the default order, so "filter + newest first +
#: LIMIT" is an index scan that stops after one page, whatever the table's size (docs/scaling.md).
ORDERED_FILTER_COLUMNS = ("user_id", "action_type", "resource_type", "category", "status", "severity", "error_type",
                          "ip_address")
#: Columns only error events fill: their indexes are partial (``WHERE <column> IS NOT NULL``, migration 0007), so
#: the other events (most of the log) cost them nothing on insert; ``<column> = value`` implies the predicate.
SPARSE_FILTER_COLUMNS = ("severity", "error_type")
for _name in ORDERED_FILTER_COLUMNS:
    _column = getattr(AuditLog, _name)
    _partial = {f"{dialect}_where": _column.is_not(None) for dialect in ("postgresql", "sqlite")} \
        if _name in SPARSE_FILTER_COLUMNS else {}
    Index(f"ix_audit_logs_{_name}_timestamp", _column, AuditLog.timestamp.desc(), AuditLog.id.desc(), **_partial)

#: The common two-filter combinations get their own ordered index (migration 0006, docs/scaling.md): with
#: only the one-column ones, their bounded count ANDs two large bitmaps and rechecks the heap. The ``username``
#: filter is an OR (the actor's name, or the name a failed login typed: a PostgreSQL-only index, below) that no
#: index returns in order, so its name has no one-column ordered index: this pair serves the name alone and with
#: an action ("failed logins of admin": 425 ms -> 6 ms at 3,000,000 rows, migration 0010).
ORDERED_FILTER_PAIRS = (("user_id", "action_type"), ("category", "status"), ("username", "action_type"))
for _first, _second in ORDERED_FILTER_PAIRS:
    Index(f"ix_audit_logs_{_first}_{_second}_timestamp", getattr(AuditLog, _first), getattr(AuditLog, _second),
          AuditLog.timestamp.desc(), AuditLog.id.desc())

#: ERROR events by time, for the error dashboard's views that the rollup cannot answer (a time of day in the
#: range, "last 24 hours"): partial, so other events never pay for it; on PostgreSQL covering (migration 0008),
#: so a day's errors are grouped from the index alone (figures: docs/scaling.md).
Index("ix_audit_logs_error_times", AuditLog.timestamp.desc(), AuditLog.id.desc(),
      postgresql_where=AuditLog.status == "ERROR", sqlite_where=AuditLog.status == "ERROR",
      postgresql_include=["fingerprint", "error_type", "severity"])
#: The same, per user: one user's errors on the dashboard.
Index("ix_audit_logs_user_errors", AuditLog.user_id, AuditLog.timestamp.desc(), AuditLog.id.desc(),
      postgresql_where=AuditLog.status == "ERROR", sqlite_where=AuditLog.status == "ERROR",
      postgresql_include=["fingerprint", "error_type", "severity"])

#: Indexes that exist only in the database (created by migrations), not in the models: the trigram index
#: behind ``search`` (PostgreSQL), the error dashboard's partial index, which also serves every
#: fingerprint lookup: ``(fingerprint, timestamp DESC, id DESC) WHERE fingerprint IS NOT NULL``, on PostgreSQL
#: covering (``INCLUDE (error_type, severity)``), and the name a failed login typed, for the ``username`` filter
#: (PostgreSQL, partial, with statistics on the expression: migration 0010), and on PostgreSQL the search
#: language's IP ranges (``audit_inet(ip_address)``, below) and path prefixes (``path text_pattern_ops``,
#: migration 0014).
DATABASE_ONLY_INDEXES = frozenset({"ix_audit_logs_description_trgm", "ix_audit_logs_errors",
                                   "ix_audit_logs_attempted_username", "ix_audit_logs_ip_inet",
                                   "ix_audit_logs_path_timestamp"})
#: Alembic's autogenerate reads this (``database.include_object``) and leaves these indexes alone.
db.metadata.info.setdefault("database_only_indexes", set()).update(DATABASE_ONLY_INDEXES)

#: PostgreSQL: an address as ``inet``, NULL for text it cannot read as one (a scope id, any string a caller
#: passed), where a plain cast would fail the query, or the insert once an index holds it. The search language
#: compares IP ranges through it, and ``ix_audit_logs_ip_inet`` indexes it (migration 0014, which creates it
#: in migrated databases; this creates it where ``create_all`` builds the tables, as the tests do).
AUDIT_INET_FUNCTION = """CREATE OR REPLACE FUNCTION audit_inet(address text) RETURNS inet
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN address::inet;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$"""
event.listen(AuditLog.__table__, "before_create", DDL(AUDIT_INET_FUNCTION).execute_if(dialect="postgresql"))

#: On PostgreSQL the primary key and the unique event id of a partitioned table must hold the partition key:
#: ``(id, timestamp)`` and ``(event_id, timestamp)``. A replayed event keeps its timestamp, so replays stay
#: idempotent; ids come from one sequence, so they stay unique. The models (and SQLite) keep ``id`` and
#: ``event_id`` alone: SQLite needs ``id`` as its INTEGER PRIMARY KEY (the rowid) to number rows.
PARTITION_KEY = "timestamp"
#: The ``ON CONFLICT`` target of an insert that skips replayed events, per database.
EVENT_ID_CONFLICT = {"postgresql": ("event_id", PARTITION_KEY), "sqlite": ("event_id",)}


def _with_partition_key(constraint, compiler, visit, **kw) -> str:
    sql = visit(constraint, **kw)
    table = constraint.table
    # Only the model's partitioned table: an old migration's create_table of audit_logs keeps its own keys.
    if table is not None and table.name == AuditLog.__tablename__ and \
            table.dialect_options["postgresql"].get("partition_by") and \
            [c.name for c in constraint.columns] in (["id"], ["event_id"]):
        sql = sql.replace(")", f", {compiler.preparer.quote(PARTITION_KEY)})", 1)
    return sql


@compiles(PrimaryKeyConstraint, "postgresql")
def _primary_key(constraint, compiler, **kw):
    return _with_partition_key(constraint, compiler, compiler.visit_primary_key_constraint, **kw)


@compiles(UniqueConstraint, "postgresql")
def _unique(constraint, compiler, **kw):
    return _with_partition_key(constraint, compiler, compiler.visit_unique_constraint, **kw)


event.listen(AuditLog.__table__, "after_create",
             lambda target, connection, **kw: partitions.create_initial(connection)
             if connection.dialect.name == "postgresql" else None)

#: Column names an event dict may carry (the table's columns, minus the generated id).
EVENT_COLUMNS = tuple(c.name for c in AuditLog.__table__.columns if c.name != "id")


class AuditChainLink(db.Model):
    """One link of the two hash chains, kept beside the log (sealing never updates an audit row): the keyed one,
    HMAC(key, previous link_hash | link material), and the public one, SHA-256(previous public_hash | link material),
    where the link material is the position, the event's time and category and its row hash
    (``integrity/canonical.py``)."""

    __tablename__ = "audit_chain"
    __table_args__ = (UniqueConstraint("audit_log_id", postgresql_include=["seq"]),)

    #: Position in the chain (1, 2, 3, ...): unique, so two sealers can never fork it.
    seq: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=False)
    #: The sealed audit row (no foreign key: the retention purge removes rows and their links together). Unique; on
    #: PostgreSQL its index also carries ``seq`` (``__table_args__``), so the purge's plan reads a month's links from
    #: the index alone (migration 0018).
    audit_log_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    #: The row's user id when it was sealed; deleting a user later sets the row's to NULL (ON DELETE SET NULL).
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    link_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: The row committed after rows with higher ids had been sealed (a slow transaction); chained anyway.
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    #: SHA-256 of the event's public form: every column, the personal ones as salted commitments
    #: (``integrity/canonical.py``). Kept when the retention purge deletes the event (the link is then a tombstone).
    row_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The unkeyed chain: SHA-256(previous link's public_hash | seq | event time | category | row_hash); anyone can
    #: recompute it, and the signed digests (``integrity/digests.py``) sign its head.
    public_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The event's time and category, in the link (and in its hashes), so that a tombstone shows which retention
    #: rule removed its event.
    event_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: ``{field: salt (hex)}`` of the personal fields, apart from their values; an erasure removes a field's salt.
    salts: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    #: ``{field: commitment (hex)}`` of the fields an erasure removed, so that the row hash can still be rebuilt.
    erased: Mapped[dict | None] = mapped_column(JSONType, nullable=True)


#: The links whose events an erasure changed: few, so the export's "is this field erased?" reads a small index.
Index("ix_audit_chain_erased", AuditChainLink.audit_log_id, postgresql_where=AuditChainLink.erased.is_not(None),
      sqlite_where=AuditChainLink.erased.is_not(None))


class ErasedFields(db.Model):
    """A read-only view of ``audit_chain`` for the pages and the API: which personal fields of an event an erasure
    removed (``erased``'s keys). Loaded with each page of events in one query (``AuditLog.erasure``)."""

    __table__ = AuditChainLink.__table__
    __mapper_args__ = {"include_properties": ["seq", "audit_log_id", "erased"]}  # noqa: RUF012


#: The event's erased fields (None: nothing erased), loaded for each batch of events in one query (``selectin``)
#: from the small index above; ``record/presentation.py`` shows them as "[erased]".
AuditLog.erasure = relationship(
    ErasedFields, primaryjoin=and_(foreign(ErasedFields.audit_log_id) == AuditLog.id, ErasedFields.erased.is_not(None)),
    viewonly=True, uselist=False, lazy="selectin")


#: The rollup's key value of a missing fingerprint, error type or severity (they are part of its primary key).
ROLLUP_NONE = ""


class ErrorRollup(db.Model):
    """How many ERROR events share one UTC day, fingerprint, error type and severity (``write/rollup.py``
    keeps it; the error dashboard reads it)."""

    __tablename__ = "audit_error_rollup"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    error_type: Mapped[str] = mapped_column(String(ERROR_TYPE_MAX), primary_key=True)
    severity: Mapped[str] = mapped_column(String(16), primary_key=True)
    occurrences: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The highest ``audit_logs.id`` counted here: the newest occurrence, which the dashboard shows.
    latest_id: Mapped[int] = mapped_column(IdType)


#: One fingerprint's days (the dashboard's view of one error group).
Index("ix_audit_error_rollup_fingerprint_day", ErrorRollup.fingerprint, ErrorRollup.day)


#: The domain events that committed with their change and wait to be moved into ``audit_logs`` (PostgreSQL, with
#: AUDIT_OUTBOX; ``write/outbox.py``): one JSON payload per event, in a heap without indexes, so that the insert in the
#: change's transaction costs the least it can. No key: the mover takes rows by their physical position.
audit_outbox = db.Table("audit_outbox", db.Column("payload", JSON, nullable=False))
