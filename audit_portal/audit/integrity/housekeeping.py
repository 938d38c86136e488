"""The background writer's housekeeping: the sealer at each turn, and the months ahead now and then. Every process
runs a writer, but each job is a singleton: the process that holds its lock does it (``delivery/locks.py``: the
sealer's ``(SEALER, 0)``, the maintenance's ``(PARTITION_MAINTENANCE, 0)``), the others only try to take the
lock at each turn, and one of them has it within a turn once its holder is gone."""

from __future__ import annotations

import time

from ...extensions import db
from ..delivery.locks import PARTITION_MAINTENANCE, SEALER, SingletonJob
from ..record import partitions
from .seal import seal_in_background


class Housekeeping:
    """The writer's periodic jobs for one app in one process (``AuditWriter(housekeeping=Housekeeping(app))``)."""

    def __init__(self, app):
        self.app = app
        self.sealer = SingletonJob(app, SEALER, 0, "sealer.lock")
        self.partitions = SingletonJob(app, PARTITION_MAINTENANCE, 0, "partitions.lock")
        #: When this process last made sure the months ahead exist (monotonic seconds; None: not as the holder).
        self._last_partition_check: float | None = None

    def __call__(self) -> None:
        """In an app context: seal what is committed, if this process is the sealer (and AUDIT_SEAL_INTERVAL is not
        0: then a separate ``flask audit sealer`` seals); every
        AUDIT_PARTITION_CHECK_SECONDS (and at once on taking the job over), on PostgreSQL, create the partitions of
        this month and the AUDIT_PARTITIONS_AHEAD next ones, if this process is the maintenance."""
        if self.app.config["AUDIT_SEAL_INTERVAL"] and self.sealer.mine():
            seal_in_background()
        if db.engine.dialect.name != "postgresql":
            return
        if not self.app.config["AUDIT_PARTITION_CHECK_SECONDS"] or not self.partitions.mine():
            self._last_partition_check = None
            return
        config = self.app.config
        now = time.monotonic()
        if self._last_partition_check is None or now - self._last_partition_check >= config[
                "AUDIT_PARTITION_CHECK_SECONDS"]:
            self._last_partition_check = now
            partitions.create_ahead(db.engine, config["AUDIT_PARTITIONS_AHEAD"],
                                    lock_timeout_ms=config["AUDIT_PARTITION_LOCK_TIMEOUT_MS"])

    def close(self) -> None:
        """Let go of both jobs (at the process's exit: another process takes them at its next turn)."""
        with self.app.app_context():
            self.sealer.release()
            self.partitions.release()
