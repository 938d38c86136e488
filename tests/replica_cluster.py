"""A throwaway PostgreSQL primary with a streaming replica, for the replica tests and ``bench/scale.py --replica``.

Both servers run as the ``postgres`` user (``runuser``) from Debian's binaries in /usr/lib/postgresql/<version>/bin,
in a temporary directory of their own (data directories and unix socket directories), on free loopback ports.
The replica is made with ``pg_basebackup -R`` (it streams from the primary over 127.0.0.1, which the throwaway
primary's pg_hba.conf trusts for replication). The machine's shared cluster (127.0.0.1:5432) is never touched.
Durability is switched off (``--no-sync``, ``fsync=off``): the servers live for one test run.

    with ReplicaCluster() as cluster:
        cluster.primary_url, cluster.replica_url   # postgresql://postgres@127.0.0.1:<port>/audit
        cluster.server_url("replica")              # the same without a database (to name another one)

``options`` adds server settings (``-c name=value ...``) to both servers: a benchmark gives them more memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

PG_ROOT = Path("/usr/lib/postgresql")
DATABASE = "audit"
#: Server options: small, fast, durability off; wal_level=replica and WAL senders for the standby.
SERVER_OPTIONS = (
    "-c fsync=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=40 "
    "-c wal_level=replica -c max_wal_senders=4 -c wal_keep_size=64MB -c hot_standby=on "
    "-c wal_receiver_status_interval=1s -c log_min_messages=warning"
)
_HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
"""


class ClusterError(RuntimeError):
    """A server could not be made or started (the message carries its log)."""


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when there is none."""
    versions = sorted((p for p in PG_ROOT.glob("*") if (p / "bin" / "pg_ctl").exists()),
                      key=lambda p: int(p.name) if p.name.isdigit() else 0)
    return versions[-1] / "bin" if versions else None


def unavailable_reason() -> str | None:
    """Why a cluster cannot be made here (None: it can): the binaries, root (for runuser) and a postgres user."""
    if pg_bin() is None:
        return f"no PostgreSQL binaries under {PG_ROOT}"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "needs root and runuser to run PostgreSQL as the postgres user"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One PostgreSQL server: its data directory, socket directory and port."""

    def __init__(self, root: Path, name: str, options: str = ""):
        self.name, self.data, self.sockets = name, root / name, root / f"{name}-sockets"
        self.options = options
        self.log = root / f"{name}.log"
        self.port = free_port()

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.server_url}/{DATABASE}"

    def start(self) -> None:
        options = f"{SERVER_OPTIONS} {self.options} -c listen_addresses=127.0.0.1 -c port={self.port} " \
                  f"-c unix_socket_directories={self.sockets}"
        _run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start", log=self.log)

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            _run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def _run(tool: str, *args, log: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = ["runuser", "-u", "postgres", "--", str(pg_bin() / tool), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
    if check and done.returncode != 0:
        tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        raise ClusterError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}")
    return done


class ReplicaCluster:
    """A primary and its streaming replica (see the module's docstring). ``start()`` / ``stop()``, or ``with``."""

    def __init__(self, options: str = ""):
        self.options = options
        self.root: Path | None = None
        self.primary: Server | None = None
        self.replica: Server | None = None
        self._engines: dict = {}

    @property
    def primary_url(self) -> str:
        return self.primary.url

    @property
    def replica_url(self) -> str:
        return self.replica.url

    def server_url(self, which: str) -> str:
        """``which`` server's URL without a database: ``postgresql://postgres@127.0.0.1:<port>``."""
        return (self.primary if which == "primary" else self.replica).server_url

    def __enter__(self) -> ReplicaCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """initdb the primary, start it, make the database, clone the replica with ``pg_basebackup -R``, start it
        and wait until it streams. Everything is removed again if any step fails."""
        reason = unavailable_reason()
        if reason:
            raise ClusterError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="audit-replica-"))
        try:
            shutil.chown(self.root, "postgres", "postgres")
            self.primary = Server(self.root, "primary", self.options)
            self.replica = Server(self.root, "replica", self.options)
            for server in (self.primary, self.replica):
                _as_postgres_dir(server.sockets)
            _run("initdb", "-D", self.primary.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                 "--locale=C")
            (self.primary.data / "pg_hba.conf").write_text(_HBA)
            self.primary.start()
            with self.engine("primary", database="postgres").connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(f'CREATE DATABASE "{DATABASE}"'))
            _run("pg_basebackup", "-D", self.replica.data, "-h", "127.0.0.1", "-p", self.primary.port, "-U", "postgres",
                 "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
            self.replica.start()
            self.wait_streaming()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both servers (immediately: their data is thrown away) and remove the directory."""
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        for server in (self.replica, self.primary):
            if server is not None:
                with contextlib.suppress(Exception):  # remove the directory whatever happened
                    server.stop("immediate")
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # -- helpers for tests and benchmarks ---------------------------------------------------------------------

    def engine(self, which: str, database: str = DATABASE):
        """A small engine of the test's own on ``which`` ("primary" or "replica"), autocommit."""
        key = (which, database)
        if key not in self._engines:
            server = self.primary if which == "primary" else self.replica
            url = f"postgresql+psycopg2://postgres@127.0.0.1:{server.port}/{database}"
            self._engines[key] = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True,
                                               connect_args={"connect_timeout": 5})
        return self._engines[key]

    def scalar(self, which: str, sql: str):
        """The one value ``sql`` returns on ``which``."""
        with self.engine(which).connect() as conn:
            return conn.execute(text(sql)).scalar()

    def execute(self, which: str, sql: str) -> None:
        """Run ``sql`` (a statement that returns no rows) on ``which``."""
        with self.engine(which).connect() as conn:
            conn.execute(text(sql))

    def wait_streaming(self, timeout: float = 30) -> None:
        """Wait until the replica accepts connections, is in recovery and streams from the primary."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.scalar("primary", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"):
                    return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise ClusterError("the replica does not stream:\n" + self.replica.log.read_text()[-3000:])
            time.sleep(0.1)

    def wait_replayed(self, timeout: float = 30) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        target = self.scalar("primary", "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while not self.scalar("replica", f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"):
            if time.monotonic() > deadline:
                raise ClusterError(f"the replica did not replay up to {target} in {timeout} s")
            time.sleep(0.05)

    def wait_received(self, timeout: float = 30) -> None:
        """Wait until the replica has received (not necessarily replayed) everything the primary wrote so far."""
        target = self.scalar("primary", "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while not self.scalar("replica", f"SELECT pg_last_wal_receive_lsn() >= '{target}'::pg_lsn"):
            if time.monotonic() > deadline:
                raise ClusterError(f"the replica did not receive up to {target} in {timeout} s")
            time.sleep(0.05)

    def pause_replay(self) -> None:
        self.scalar("replica", "SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.scalar("replica", "SELECT pg_wal_replay_resume()")

    def stop_replica(self) -> None:
        self._dispose("replica")
        self.replica.stop("fast")

    def start_replica(self) -> None:
        self.replica.start()
        self.wait_streaming()

    def _dispose(self, which: str) -> None:
        for key in [k for k in self._engines if k[0] == which]:
            self._engines.pop(key).dispose()


def _as_postgres_dir(path: Path) -> None:
    path.mkdir(mode=0o700)
    shutil.chown(path, "postgres", "postgres")
