"""The background writer's housekeeping: the sealer at each turn, and the months ahead now and then."""

from __future__ import annotations

import time

from flask import current_app

from ...extensions import db
from ..record import partitions
from .seal import seal_in_background

#: When this process last made sure the months ahead exist (monotonic seconds; None: not yet).
_last_partition_check: float | None = None


def housekeeping() -> None:
    """Seal what is committed; every AUDIT_PARTITION_CHECK_SECONDS (and at the first turn), on a partitioned
    PostgreSQL table, create the partitions of this month and the AUDIT_PARTITIONS_AHEAD next ones."""
    global _last_partition_check
    seal_in_background()
    now = time.monotonic()
    if _last_partition_check is None or now - _last_partition_check >= current_app.config[
            "AUDIT_PARTITION_CHECK_SECONDS"]:
        _last_partition_check = now
        if db.engine.dialect.name == "postgresql":
            partitions.create_ahead(db.engine, current_app.config["AUDIT_PARTITIONS_AHEAD"],
                                    lock_timeout_ms=current_app.config["AUDIT_PARTITION_LOCK_TIMEOUT_MS"])
