"""Fixtures shared by the integrity tests."""

from __future__ import annotations

import pytest

from ..chain_support import record_events, seal
from ..digest_support import KeyPair, run_sealer


@pytest.fixture
def signed(app, runner, tmp_path):
    """Eighteen events, sealed and signed in three digests (the sealer signs every 6 links here); returns the key
    pair and the events' ids."""
    app.config["AUDIT_DIGEST_EVERY_EVENTS"] = 6
    key = KeyPair(tmp_path / "keys")
    ids = record_events(app, 6, label="first") + record_events(app, 6, label="second") + \
        record_events(app, 6, label="third")
    seal(app)
    result = run_sealer(app, runner, key)
    assert result.exit_code == 0, result.output
    return key, ids
