"""An auditor's check, with no app and no database: ``flask audit export --format ndjson --with-digests DIR`` and
``python scripts/verify_audit_export.py``, run as the auditor runs it (a separate Python process, given only the
files). Each kind of tampering is named; an untouched export and a filtered one verify."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from audit_portal.audit.integrity.models import AuditDigest
from audit_portal.extensions import db

from ..chain_support import CHAIN, LOGS, recompute_chain, record_events, row, tamper
from ..digest_support import KeyPair, run_sealer

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "verify_audit_export.py"
ATTACKER_KEY = "a-key-the-attacker-made-up-0000000000000"


def export(runner, tmp_path, *filters) -> tuple[Path, Path]:
    events, digests = tmp_path / "events.ndjson", tmp_path / "digests"
    result = runner.invoke(args=["audit", "export", "--format", "ndjson", "--with-digests", str(digests),
                                 "-o", str(events), *filters])
    assert result.exit_code == 0, result.output
    return events, digests


def check(events: Path, digests: Path, *keys: Path, complete: bool = False) -> subprocess.CompletedProcess:
    """The verifier, in a separate process that is given only files (no settings, no app on its path)."""
    arguments = [sys.executable, "-I", str(SCRIPT), "--events", str(events), "--digests", str(digests)]
    arguments += ["--complete"] if complete else []
    for key in keys:
        arguments += ["--public-key", str(key)]
    return subprocess.run(arguments, capture_output=True, text=True, timeout=60, cwd=events.parent, env={})


def lines(events: Path) -> list[dict]:
    """The export's lines, its header (what was asked for) included."""
    return [json.loads(line) for line in events.read_text().splitlines()]


def test_an_untouched_export_verifies(app, runner, tmp_path, signed):
    key, ids = signed
    events, digests = export(runner, tmp_path)

    result = check(events, digests, key.public)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout
    exported = [item["event"]["id"] for item in lines(events) if item["type"] == "event"]
    assert set(ids) <= set(exported)
    assert len(list(digests.glob("digest-*.json"))) >= 2


def test_a_filtered_export_verifies_and_shows_only_the_matching_events(app, runner, tmp_path, signed):
    key, ids = signed
    assert row(app, ids[7])["description"] == "Changed second 1"
    events, digests = export(runner, tmp_path, "--search", "Changed second 1")

    result = check(events, digests, key.public)

    assert result.returncode == 0, result.stdout + result.stderr
    items = lines(events)
    assert [item["event"]["id"] for item in items if item["type"] == "event"] == [ids[7]]
    others = [item for item in items if item["type"] == "link"]
    assert others and all("event" not in item and item["row_hash"] for item in others)  # proven, not shown


def test_an_edited_event_is_named(app, runner, tmp_path, signed):
    key, ids = signed
    tamper(app, update(LOGS).where(LOGS.c.id == ids[3]).values(description="Nothing happened"))
    events, digests = export(runner, tmp_path)

    result = check(events, digests, key.public)

    assert result.returncode == 1
    assert f"Event {ids[3]} (link 4) was changed after it was recorded." in result.stdout


def test_a_deleted_event_is_named(app, runner, tmp_path, signed):
    key, ids = signed
    tamper(app, delete(LOGS).where(LOGS.c.id == ids[5]))
    events, digests = export(runner, tmp_path)

    result = check(events, digests, key.public)

    assert result.returncode == 1
    assert "The event at link 6 was deleted: no signed purge record covers it." in result.stdout


def test_an_event_inserted_into_the_export_is_named(app, runner, tmp_path, signed):
    key, _ = signed
    events, digests = export(runner, tmp_path)
    items = lines(events)
    forged = json.loads(json.dumps(items[4]))
    items.insert(5, forged)  # a second line for link 5
    events.write_text("".join(json.dumps(item) + "\n" for item in items))

    result = check(events, digests, key.public)

    assert result.returncode == 1
    assert "events were reordered or inserted" in result.stdout


def test_two_swapped_events_are_both_named(app, runner, tmp_path, signed):
    key, ids = signed
    first, second = row(app, ids[1]), row(app, ids[2])
    tamper(app, update(LOGS).where(LOGS.c.id == ids[1]).values(description=second["description"]),
           update(LOGS).where(LOGS.c.id == ids[2]).values(description=first["description"]))
    events, digests = export(runner, tmp_path)

    result = check(events, digests, key.public)

    assert result.returncode == 1
    assert f"Event {ids[1]} (link 2)" in result.stdout and f"Event {ids[2]} (link 3)" in result.stdout


def test_a_cut_tail_is_named(app, runner, tmp_path, signed):
    key, ids = signed
    tamper(app, delete(CHAIN).where(CHAIN.c.audit_log_id.in_(ids[-3:])), delete(LOGS).where(LOGS.c.id.in_(ids[-3:])))
    events, digests = export(runner, tmp_path)

    result = check(events, digests, key.public)

    assert result.returncode == 1
    assert "the tail was cut" in result.stdout


def test_a_missing_digest_is_named(app, runner, tmp_path, signed):
    key, _ = signed
    events, digests = export(runner, tmp_path)
    (digests / "digest-000000000012.json").unlink()  # the one for links 7 to 12

    result = check(events, digests, key.public)

    assert result.returncode == 1
    assert "does not follow the digest ending at link 6: a digest is missing." in result.stdout


def test_a_chain_resealed_and_resigned_with_other_keys_is_named(app, runner, tmp_path, signed):
    """The attacker holds the web host: they edit an event, recompute both chains with a key of their own, and
    sign new digests with an Ed25519 key of their own. The auditor's public key is not theirs."""
    key, ids = signed
    recompute_chain(app, ATTACKER_KEY, rewrite=[update(LOGS).where(LOGS.c.id == ids[0]).values(description="x")])
    with app.app_context():
        db.session.execute(delete(AuditDigest))
        db.session.commit()
    theirs = KeyPair(tmp_path / "their-keys")
    assert run_sealer(app, runner, theirs).exit_code == 0
    events, digests = export(runner, tmp_path)

    assert check(events, digests, theirs.public).returncode == 0  # consistent in itself...
    result = check(events, digests, key.public)  # ...but not signed by the key the auditor holds

    assert result.returncode == 1
    assert "is signed by another key" in result.stdout


def test_a_public_key_that_does_not_parse_is_a_clear_error(app, runner, tmp_path, signed):
    events, digests = export(runner, tmp_path)
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")

    result = check(events, digests, bad)

    assert result.returncode == 2
    assert f"--public-key {bad}: not a PEM public key" in result.stderr


def test_an_export_without_signed_digests_is_refused(app, runner, tmp_path):
    record_events(app, 2)
    result = runner.invoke(args=["audit", "export", "--format", "ndjson", "--with-digests", str(tmp_path / "d")])

    assert result.exit_code == 1
    assert "No signed digests yet" in result.output


def test_with_digests_needs_ndjson(app, runner, tmp_path):
    result = runner.invoke(args=["audit", "export", "--format", "csv", "--with-digests", str(tmp_path / "d")])

    assert result.exit_code == 2
    assert "--with-digests writes NDJSON" in result.output


def test_the_verifier_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - {"cryptography"} <= set(sys.stdlib_module_names)


@pytest.mark.parametrize("digests", [False, True])
def test_an_output_file_in_a_missing_folder_is_a_clear_error(app, runner, tmp_path, signed, digests):
    target = tmp_path / "no-such-folder" / "events.ndjson"
    extra = ["--with-digests", str(tmp_path / "d")] if digests else []
    result = runner.invoke(args=["audit", "export", "--format", "ndjson", *extra, "-o", str(target)])

    assert result.exit_code == 2
    assert f"--output {target}: cannot be written" in result.output
