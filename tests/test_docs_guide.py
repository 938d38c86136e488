"""The examples in docs/audit-logging-guide.md run, in order, and record what the guide says."""

import re
from pathlib import Path

from flask_login import login_user
from sqlalchemy import select

from audit_portal.extensions import db
from audit_portal.users.models import User

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "audit-logging-guide.md"


def test_guide_examples_run_and_record_events(app, make_user, audit_rows):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    make_user("alice")
    with app.test_request_context("/guide", headers={"User-Agent": "guide-test"}, environ_base={"REMOTE_ADDR": "203.0.113.5"}):
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        login_user(alice)
        namespace = {"alice": alice}
        for block in blocks:
            exec(compile(block, str(GUIDE), "exec"), namespace)  # noqa: S102 - our own documentation
        db.session.commit()
    rows = {row.description: row for row in audit_rows() if row.username == "alice" or row.user_id}
    renamed = rows["alice renamed team Ops to Platform"]
    assert renamed.event_metadata == {"old": {"name": "Ops"}, "new": {"name": "Platform"}}
    assert renamed.ip_address == "203.0.113.5" and renamed.user_agent == "guide-test"
    assert rows["alice downloaded upload-42"].is_sensitive
    assert rows["alice tried to delete upload-43: it is locked"].status == "FAILURE"
    assert rows["alice changed the retention period"].event_metadata["admin_action"] is True
    errors = audit_rows(action_type="ERROR_OCCURRED")
    assert errors[0].error_type == "ZeroDivisionError" and errors[0].severity == "ERROR"
    assert "Traceback" in errors[0].stack_trace
    [imported] = [r for r in audit_rows() if r.description == "Imported a CSV file"]
    assert imported.resource_id == "upload-44" and imported.status == "SUCCESS"
    assert imported.event_metadata["params"]["api_key"] == "[REDACTED]"
    assert imported.username == "alice"
