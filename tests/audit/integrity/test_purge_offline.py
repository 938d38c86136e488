"""Verification with signed digests after a category purge: `flask audit verify` with the public key, and an export
with digests (``audit export --with-digests``) checked by ``scripts/verify_audit_export.py``, pass with the purged
events' tombstones (the purge record signed into the next digest covers them), and still name an event deleted by
hand."""

from __future__ import annotations

import importlib.util
import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from audit_portal.extensions import db

from ..chain_support import CHAIN, LOGS, tamper
from ..digest_support import KeyPair, body, run_sealer, stored_digests, verify_with
from .test_purge import RETENTION, existing, hold, purge_cli, record

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "verify_audit_export.py"


def offline():
    spec = importlib.util.spec_from_file_location("verify_audit_export", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_offline(runner, tmp_path: Path, key: KeyPair, name: str, *filters: str) -> tuple[int, str]:
    folder = tmp_path / name
    folder.mkdir()
    events = folder / "events.ndjson"
    exported = runner.invoke(args=["audit", "export", "--format", "ndjson", "--with-digests", str(folder / "digests"),
                                   "-o", str(events), *filters])
    assert exported.exit_code == 0, exported.output
    out = io.StringIO()
    with redirect_stdout(out):
        status = offline().main(["--events", str(events), "--digests", str(folder / "digests"),
                                 "--public-key", str(key.public)])
    return status, out.getvalue()


@pytest.mark.settings(**RETENTION)
def test_an_export_verifies_offline_after_a_category_purge_and_a_hand_deletion_does_not(app, runner, tmp_path):
    (tmp_path / "key").mkdir()
    key = KeyPair(tmp_path / "key")
    purged = [record(app, "requests", 100), record(app, "data", 200), record(app, "authentication", 400)]
    young, security, held = record(app, "requests", 10), record(app, "security", 400), record(app, "data", 300)
    hold(app, 301, 299)
    signed = run_sealer(app, runner, key)
    assert signed.exit_code == 0, signed.output

    assert purge_cli(runner, "--yes").exit_code == 0
    assert existing(app, purged + [young, security, held]) == sorted([young, security, held])
    signed = run_sealer(app, runner, key)  # the next digest carries the purge's record
    assert signed.exit_code == 0, signed.output
    [carried] = [p for row in stored_digests(app) for p in body(row)["purges"]]
    assert carried["count"] == len(purged)
    verified = verify_with(app, runner, key.public)
    assert verified.exit_code == 0, verified.output

    status, output = check_offline(runner, tmp_path, key, "after-purge")
    assert status == 0, output
    assert f"(of which {len(purged)} purged)" in output
    status, output = check_offline(runner, tmp_path, key, "filtered", "--category", "security")
    assert status == 0, output
    assert output.startswith("OK: 1 events") and f"(of which {len(purged)} purged)" in output

    tamper(app, delete(LOGS).where(LOGS.c.id == held))
    status, output = check_offline(runner, tmp_path, key, "after-deletion")
    assert status == 1, output
    with app.app_context():
        seq = db.session.scalar(select(CHAIN.c.seq).where(CHAIN.c.audit_log_id == held))
    assert f"The event at link {seq} was deleted: no signed purge record covers it." in output
    assert output.count("was deleted") == 1
    verified = verify_with(app, runner, key.public)
    assert verified.exit_code == 1 and f"Event {held} (link {seq}) was deleted" in verified.output
