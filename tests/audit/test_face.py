"""``audit_portal/audit/__init__.py``: the audit package's public face loads its names lazily, and importing
one part of the package loads little else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import audit_portal.audit as audit

ROOT = Path(__file__).resolve().parents[2]


def _project_modules_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(m for m in sys.modules if m.startswith('audit_portal'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return done.stdout.split()


def test_importing_the_enums_loads_fewer_than_ten_project_modules():
    """It loaded about 47 when each package's __init__ imported its views."""
    loaded = _project_modules_after("import audit_portal.audit.record.enums")
    assert len(loaded) < 10, loaded
    assert not [name for name in loaded if ".web" in name or ".users" in name or ".auth" in name]


def test_the_face_loads_a_name_when_it_is_first_used():
    loaded = _project_modules_after("from audit_portal.audit import ActionType")
    assert "audit_portal.audit.record.enums" in loaded
    assert "audit_portal.audit.write.service" not in loaded


def test_every_public_name_resolves_and_all_lists_them():
    assert sorted(audit.__all__) == sorted([*audit._FACE, "init_app"])
    for name in audit._FACE:
        assert getattr(audit, name) is not None, name
    assert audit.log_audit.__module__ == "audit_portal.audit.write.service"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'log_everything'"):
        audit.log_everything  # noqa: B018
