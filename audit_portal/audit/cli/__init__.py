"""The audit commands, one module per group: ``flask audit ...`` and ``flask demo seed`` (maintenance),
``flask streams ...`` and ``flask alerts ...``."""

from __future__ import annotations

from .alerts import alerts_cli
from .erasure import erasure_cli
from .maintenance import audit_cli, demo_cli
from .streams import streams_cli

audit_cli.add_command(erasure_cli)

__all__ = ["alerts_cli", "audit_cli", "demo_cli", "streams_cli"]
