"""The read replica (docs/scaling.md): a second engine, on ``DATABASE_REPLICA_URL``, for reads that may lag a moment.

Unset (the default), nothing here runs and every read goes to the primary. Set, the read layer runs the reads that
only list what is there (the viewer, the list API, the error dashboard, the exports: ``audit/read``) through
``replica_first``; everything else (writes, logins, user management, the writer, the sealer, streams, alerts,
purge, verification) keeps using ``db.session``, the primary's.

A replica is used only while it is current: its lag is 0 when it has replayed all the WAL it received, else the
age of the last transaction it replayed, and past ``REPLICA_MAX_LAG_SECONDS`` it is skipped. The check costs a
query, so its verdict is kept for ``REPLICA_CHECK_SECONDS`` per process. A replica that cannot be reached is
skipped for ``RETRY_SECONDS``; a read that fails on it is run again on the primary. So the replica can never
make a page fail: at worst the primary serves it. Each skip is logged when it starts (and when it ends) and
counted (``database_replica_skips_total{reason}`` with METRICS_ENABLED).

Within one request (one app context) the choice is made once: the viewer's list and its histogram come from
the same database.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from .config import ConfigError
from .database import engine_options, normalise_database_url
from .extensions import db
from .metrics import families

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a new connection to the replica may take: less than the primary's, because a request that finds the
#: replica gone then waits this long once before the primary serves it.
CONNECT_TIMEOUT_S = 2
#: Seconds an unreachable replica is skipped before it is tried again (at least REPLICA_CHECK_SECONDS).
RETRY_SECONDS = 5.0
#: The replica's lag in seconds: 0 when it has replayed all it received (or is no standby at all), else the age of
#: the last transaction it replayed; NULL (unknown, so skipped) when it has replayed none since it started.
LAG_SQL = text(
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
)
#: ``g`` key: this app context's choice (the replica's session, or None for the primary).
_CHOICE = "_replica_session"

LAGGING, UNREACHABLE, FAILED = "lagging", "unreachable", "failed"


class Replica:
    """The replica's engine and the verdict on it (current or skipped, and why), kept for a moment."""

    def __init__(self, engine: Engine, max_lag: float, check_seconds: float, metrics: bool):
        self.engine, self.max_lag, self.check_seconds, self.metrics = engine, max_lag, check_seconds, metrics
        self._lock = threading.Lock()
        self._usable = False
        self._reason: str | None = None  # why it is skipped; None: in use (or not checked yet)
        self._valid_until = 0.0  # monotonic time until which the verdict stands

    def usable(self) -> bool:
        """Whether reads may go to the replica now. One thread checks when the verdict is stale; the others keep
        the last verdict meanwhile, so no request waits for another's check."""
        if time.monotonic() < self._valid_until or not self._lock.acquire(blocking=False):
            return self._usable
        try:
            if time.monotonic() >= self._valid_until:
                self._check()
            return self._usable
        finally:
            self._lock.release()

    def _check(self) -> None:
        try:
            with self.engine.connect() as connection:
                lag = connection.execute(LAG_SQL).scalar()
        except (sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError) as exc:
            self._verdict(False, UNREACHABLE, f"cannot be reached ({_first_line(exc)})", RETRY_SECONDS)
            return
        lag = None if lag is None else float(lag)
        if self.metrics and lag is not None:
            families.REPLICA_LAG.set(lag)
        if lag is None or lag > self.max_lag:
            shown = "unknown" if lag is None else f"{lag:.1f} s"
            self._verdict(False, LAGGING, f"lags {shown} (REPLICA_MAX_LAG_SECONDS={self.max_lag:g})",
                          self.check_seconds)
        else:
            self._verdict(True, None, "", self.check_seconds)

    def _verdict(self, usable: bool, reason: str | None, why: str, hold: float) -> None:
        if reason != self._reason:  # a change: say it once, not at every read
            if reason:
                log.warning("read replica skipped, reads go to the primary: it %s", why)
            else:
                log.warning("read replica in use again (it was skipped: %s)", self._reason)
        self._usable, self._reason = usable, reason
        self._valid_until = time.monotonic() + max(hold, self.check_seconds)

    def failed(self, exc: BaseException) -> None:
        """A read failed on the replica: skip it for a while (it is retried after RETRY_SECONDS)."""
        with self._lock:
            self._verdict(False, FAILED, f"failed a read ({_first_line(exc)})", RETRY_SECONDS)

    @property
    def reason(self) -> str | None:
        return self._reason

    def dispose(self) -> None:
        """Close the pooled connections (tests and benchmarks that build many apps)."""
        self.engine.dispose()

    def count_skip(self, reason: str) -> None:
        if self.metrics:
            families.REPLICA_SKIPS.labels(reason).inc()


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


def init_app(app: Flask) -> None:
    """With DATABASE_REPLICA_URL: the replica's engine (PostgreSQL only), and closing each app context's session."""
    url = app.config.get("DATABASE_REPLICA_URL") or ""
    if not url:
        return
    url = normalise_database_url(url)
    if not url.startswith("postgresql") or not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        raise ConfigError("DATABASE_REPLICA_URL is for PostgreSQL: a streaming replica of the PostgreSQL database in "
                          "DATABASE_URL (postgresql://...). Leave it empty to read everything from DATABASE_URL.")
    options = engine_options(url)
    if "connect_timeout=" not in url:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    app.extensions["replica"] = Replica(create_engine(url, **options), float(app.config["REPLICA_MAX_LAG_SECONDS"]),
                                        float(app.config["REPLICA_CHECK_SECONDS"]), app.config["METRICS_ENABLED"])
    app.teardown_appcontext(_close_session)


def _replica() -> Replica | None:
    return current_app.extensions.get("replica")


def _close_session(exc: BaseException | None = None) -> None:
    session = g.pop(_CHOICE, None)
    if session is not None:
        try:
            session.close()
        except Exception:  # noqa: BLE001 - the replica went away: nothing to roll back there
            with contextlib.suppress(Exception):
                session.invalidate()


def reading_session() -> Session | None:
    """This app context's session on the replica, or None when reads go to the primary (no replica, or it lags or
    cannot be reached). Decided at the first read of the context, then kept."""
    replica = _replica()
    if replica is None:
        return None
    if _CHOICE not in g:
        usable = replica.usable()
        if not usable:
            replica.count_skip(replica.reason or UNREACHABLE)
        setattr(g, _CHOICE, Session(bind=replica.engine, autoflush=False) if usable else None)
    return g.get(_CHOICE)


def _fall_back(replica: Replica, exc: BaseException) -> None:
    """A read failed on the replica: mark it, discard its session, and let the rest of the context use the primary."""
    replica.failed(exc)
    replica.count_skip(FAILED)
    session = g.pop(_CHOICE, None)
    setattr(g, _CHOICE, None)
    if session is not None:
        with contextlib.suppress(Exception):  # its connection is already gone
            session.invalidate()


#: Errors of the replica that its fallback covers: connections, timeouts and anything its server answers with
#: (a query cancelled by a recovery conflict, say).
_REPLICA_ERRORS = (sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError)


def replica_first(read: Callable[..., T]) -> Callable[..., T]:
    """Run ``read`` with ``session=`` the replica's session when the replica is in use, else ``db.session``; a read
    that fails on the replica runs again on the primary. A ``session`` the caller gives is used as it is."""

    @functools.wraps(read)
    def run(*args, session: Session | None = None, **kwargs) -> T:
        if session is not None:
            return read(*args, session=session, **kwargs)
        replica_session = reading_session()
        if replica_session is None:
            return read(*args, session=db.session, **kwargs)
        try:
            return read(*args, session=replica_session, **kwargs)
        except _REPLICA_ERRORS as exc:
            _fall_back(_replica(), exc)
            return read(*args, session=db.session, **kwargs)

    return run


def connect(engine: Engine) -> Connection:
    """A new connection of ``engine`` (an export's own); if that is the replica's and it fails, the primary's."""
    replica = _replica()
    if replica is None or engine is not replica.engine:
        return engine.connect()
    try:
        return engine.connect()
    except _REPLICA_ERRORS as exc:
        _fall_back(replica, exc)
        return db.engine.connect()
