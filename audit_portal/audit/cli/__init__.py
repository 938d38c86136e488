"""The audit commands, one module per group: ``flask audit ...`` and ``flask demo seed`` (maintenance),
``flask audit keys ...`` and ``flask audit sealer`` (integrity), ``flask streams ...`` and ``flask alerts ...``."""

from __future__ import annotations

from . import holds as _holds  # noqa: F401 - adds `flask audit hold ...` to audit_cli
from . import integrity as _integrity  # noqa: F401 - adds `audit keys` and `audit sealer` to audit_cli
from . import purge as _purge  # noqa: F401 - adds `flask audit purge` to audit_cli
from .alerts import alerts_cli
from .maintenance import audit_cli, demo_cli
from .streams import streams_cli

__all__ = ["alerts_cli", "audit_cli", "demo_cli", "streams_cli"]
