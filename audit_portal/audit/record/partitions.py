"""Monthly partitions of ``audit_logs`` on PostgreSQL (``PARTITION BY RANGE (timestamp)``); SQLite has none.

An audit log only grows, and retention removes its oldest months: with one partition per UTC month, a month
past its retention is dropped as a table (instant, no dead rows, no vacuum) instead of deleted row by row
(``integrity/purge.py``). Each partition is named after its month (``audit_logs_2026_12``) and covers
``[first of the month, first of the next)`` in UTC.

No insert may ever fail for a missing month. The months ahead are created by ``flask audit partitions``
(``--ahead``, default 3) and by the background maintenance (``create_ahead``), the current and next month when
the table is created; and every insert path asks ``ensure_for_events`` first, which creates a month it has not
seen (a replay from the spool, an event of a month the purge dropped, a clock jump) in the inserting
transaction. There is no default partition: it would catch those rows, but then a month could not be created while
the default held rows of it, and ``DETACH ... CONCURRENTLY`` is refused beside one.

A month is made as a table of its own and then attached (``ATTACH PARTITION`` takes a SHARE UPDATE EXCLUSIVE
lock on ``audit_logs``, which readers and writers do not wait for; ``CREATE TABLE ... PARTITION OF`` would take
an ACCESS EXCLUSIVE one), with a short ``lock_timeout``, retried. Row triggers of ``audit_logs`` (the
append-only rule) reach every partition by themselves; the statement trigger that refuses TRUNCATE does not,
so each new partition gets its own.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

#: The partitioned table (``models.AuditLog``).
TABLE = "audit_logs"
#: A month the retention purge has detached (and removed from the chain) but not yet dropped is renamed to this
#: prefix and its month (``integrity/purge.py``); ``drop_detached`` drops what an interrupted purge left.
PURGED_PREFIX = "audit_logs_purged_"
#: Advisory-lock key (one namespace) taken while months are created: two processes never race for one.
_LOCK_KEY = 7317020
#: How long one attempt waits for a lock before it gives up and tries again (ms; AUDIT_PARTITION_LOCK_TIMEOUT_MS),
#: and how many attempts.
LOCK_TIMEOUT_MS = 200
ATTEMPTS = 20
DEFAULT_AHEAD = 3


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime  #: inclusive, UTC
    upper: datetime  #: exclusive, UTC


def month_of(moment: datetime) -> date:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def add_months(month: date, count: int) -> date:
    for _ in range(count):
        month = next_month(month)
    return month


def partition_name(month: date) -> str:
    return f"{TABLE}_{month.year:04d}_{month.month:02d}"


def _start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


# -- is the table partitioned, and which months exist -----------------------------------------------------------

#: Per engine: None (not partitioned: SQLite, or a database before migration 0015) or the months known to exist.
#: Keyed by engine, so every app (every test) starts afresh; ``forget`` empties it when a month is dropped.
_known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def _timestamp(literal: str) -> datetime:
    return datetime.fromisoformat(literal).astimezone(UTC)


def partitions(connection) -> list[Partition]:
    """The partitions of ``audit_logs``, oldest first (none when it is not partitioned)."""
    if connection.dialect.name != "postgresql":
        return []
    rows = connection.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:table)"), {"table": TABLE}).all()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match:
            found.append(Partition(name, _timestamp(match.group(1)), _timestamp(match.group(2))))
    return sorted(found, key=lambda p: p.lower)


def is_partitioned(connection) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    return connection.scalar(text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(:t)"),
                             {"t": TABLE}) is True


def _months(connection) -> set[date] | None:
    engine = connection.engine
    if engine not in _known:
        _known[engine] = ({month_of(p.lower) for p in partitions(connection)}
                          if is_partitioned(connection) else None)
    return _known[engine]


def forget(engine) -> None:
    """Read the months from the catalog again next time (a month was dropped, or an insert found one missing)."""
    _known.pop(engine, None)


# -- creating months -----------------------------------------------------------------------------------------------

def _create(connection, month: date) -> bool:
    """Create and attach ``month``'s partition in the connection's transaction, unless it exists. True if made."""
    name = partition_name(month)
    if connection.scalar(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}):
        return False
    lower, upper = _start(month).isoformat(), _start(next_month(month)).isoformat()
    connection.exec_driver_sql(f'CREATE TABLE "{name}" (LIKE "{TABLE}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
    connection.exec_driver_sql(f'ALTER TABLE "{TABLE}" ATTACH PARTITION "{name}" '
                               f"FOR VALUES FROM ('{lower}') TO ('{upper}')")
    if connection.scalar(text("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(:t) "
                              "AND tgname = 'audit_logs_no_truncate'"), {"t": TABLE}):
        connection.exec_driver_sql(f'CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON "{name}" '
                                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()")
    return True


def create_months(engine, months, lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> list[str]:
    """Create the partitions of ``months`` that do not exist, on a connection of their own (committed at once,
    whatever the caller's transaction does); returns the names made. Waits for locks ``LOCK_TIMEOUT_MS`` at a
    time, ``ATTEMPTS`` times, so that creating a month never holds up the requests queued behind it."""
    made: list[str] = []
    wanted = sorted(set(months))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                made = [partition_name(m) for m in wanted if _create(conn, m)]
            break
        except OperationalError as exc:  # lock_timeout: someone holds a conflicting lock; try again
            if "lock timeout" not in str(exc.orig) or attempt == ATTEMPTS:
                raise
            time.sleep(min(0.05 * attempt, 0.5))
    forget(engine)
    if made:
        log.info("audit partitions: created %s", ", ".join(made))
    return made


def with_lock_retries(connection, statements: list[str], lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> None:
    """Run ``statements`` in a savepoint of the connection's transaction, each waiting at most ``lock_timeout_ms``
    for its lock; on a lock timeout roll the savepoint back (which lets go of what it had locked, so nobody queues
    behind a statement that waits) and try again, up to 600 times, after a pause growing to 0.2 s."""
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
    for attempt in range(1, 601):
        savepoint = connection.begin_nested()
        try:
            for statement in statements:
                connection.exec_driver_sql(statement)
            savepoint.commit()
            break
        except OperationalError as exc:
            savepoint.rollback()
            if "lock timeout" not in str(exc.orig) or attempt == 600:
                raise
            time.sleep(min(0.01 * attempt, 0.2))
    connection.exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")


def detached_name(name: str) -> str:
    """What the retention purge renames a month to once it has detached it (``audit_logs_purged_YYYY_MM``)."""
    return name.replace(f"{TABLE}_", PURGED_PREFIX, 1)


def drop_detached(engine, names: list[str] | None = None, lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> list[str]:
    """Drop months the retention purge has detached: ``names``, or every ``audit_logs_purged_*`` (left by a purge
    that stopped between its detach and its drop). Dropping one removes its foreign keys' triggers on users, which
    takes users' ACCESS EXCLUSIVE lock: waited for ``lock_timeout_ms`` at a time."""
    with engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            return []
        if names is None:
            names = conn.execute(text("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE :p "
                                      "ORDER BY 1"), {"p": PURGED_PREFIX.replace("_", r"\_") + "%"}).scalars().all()
        if names:
            with_lock_retries(conn, [f'DROP TABLE "{n}"' for n in names], lock_timeout_ms)
    if names:
        log.info("audit partitions: dropped %s", ", ".join(names))
    return list(names)


def create_ahead(engine, ahead: int = DEFAULT_AHEAD, now: datetime | None = None,
                 lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> list[str]:
    """Make sure this month and the ``ahead`` next ones have partitions (PostgreSQL, when partitioned)."""
    with engine.connect() as conn:
        if not is_partitioned(conn):
            return []
    first = month_of(now or datetime.now(UTC))
    made = create_months(engine, [add_months(first, i) for i in range(ahead + 1)], lock_timeout_ms)
    drop_detached(engine, lock_timeout_ms=lock_timeout_ms)  # what an interrupted purge left
    return made


def ensure_for_events(connection, events: list[dict]) -> None:
    """Before ``events`` are inserted on ``connection``: ``ensure_months`` for the months they fall in. One
    dictionary lookup per event when the months exist (the usual case)."""
    ensure_months(connection, {month_of(e["timestamp"]) for e in events if isinstance(e.get("timestamp"), datetime)})


def ensure_months(connection, months) -> None:
    """Create those of ``months`` that have no partition, in the connection's own transaction (so that it cannot
    wait for a lock its own transaction holds, such as the foreign key's on ``users`` after a user was changed; if
    that transaction rolls back, so does the month, and the next insert makes it again)."""
    known = _months(connection)
    if known is None:
        return
    missing = set(months) - known
    if missing:
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        made = [partition_name(m) for m in sorted(missing) if _create(connection, m)]
        forget(connection.engine)  # read again once committed
        if made:
            log.info("audit partitions: created %s for the events being stored", ", ".join(made))


def missing_partition(exc: BaseException) -> bool:
    """True when ``exc`` is PostgreSQL's refusal of a row no partition takes."""
    return "no partition of relation" in str(getattr(exc, "orig", exc))


# -- the table as ``create_all`` makes it ------------------------------------------------------------------------

def create_initial(connection) -> None:
    """Right after ``audit_logs`` is created on PostgreSQL: this month's and the next month's partitions (the
    others come ahead, from maintenance, or on demand)."""
    first = month_of(datetime.now(UTC))
    for month in (first, next_month(first)):
        _create(connection, month)
