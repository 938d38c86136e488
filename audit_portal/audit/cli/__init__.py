"""The audit commands, one module per group: ``flask audit ...`` and ``flask demo seed`` (maintenance),
``flask streams ...`` and ``flask alerts ...``."""

from __future__ import annotations

from .maintenance import audit_cli, demo_cli
from .streams import streams_cli

__all__ = ["audit_cli", "demo_cli", "streams_cli"]
