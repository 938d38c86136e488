"""``flask audit export`` (audit/cli.py): filters, formats, the row limit and usage errors. The other commands
are tested with what they run: ``audit verify`` in integrity/test_chain.py, ``audit purge`` in
integrity/test_purge.py, ``audit rollup`` in write/test_rollup.py, ``demo seed`` in demo/test_seed.py."""

import csv
import io
import json

from audit_portal.audit.record.enums import ActionType, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow


def _insert(app, *events):
    with app.app_context(), db.engine.begin() as conn:
        insert_ignoring_duplicates(conn, list(events))


def _event(description, status=Status.SUCCESS):
    return build_event(ActionType.UPDATE, ResourceType.USER, "7", description, timestamp=utcnow(), status=status)


def test_export_csv_to_a_file_with_filters(app, runner, tmp_path, audit_rows):
    _insert(app, _event("=HYPERLINK(\"http://evil\")", Status.FAILURE), _event("fine"))
    out = tmp_path / "audit.csv"
    result = runner.invoke(args=["audit", "export", "--format", "csv", "--status", "failure", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote 1 events" in result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 1 and rows[0]["description"] == "'=HYPERLINK(\"http://evil\")"
    [export] = audit_rows(action_type="EXPORT")
    assert export.event_metadata["channel"] == "cli" and export.event_metadata["row_count"] == 1


def test_export_ndjson_to_stdout(app, runner):
    _insert(app, _event("one"), _event("two"))
    result = runner.invoke(args=["audit", "export", "--format", "ndjson"])
    assert result.exit_code == 0
    assert sorted(json.loads(line)["description"] for line in result.stdout.splitlines()) == ["one", "two"]


def test_bad_arguments_are_usage_errors(runner):
    result = runner.invoke(args=["audit", "export", "--status", "maybe"])
    assert result.exit_code == 2 and "--status" in result.output and "SUCCESS, FAILURE, ERROR" in result.output
    result = runner.invoke(args=["audit", "export", "--format", "xml"])
    assert result.exit_code == 2 and "csv, json, ndjson" in result.output


def test_over_the_limit_exports_nothing(app, runner, tmp_path):
    app.config["AUDIT_EXPORT_MAX_ROWS"] = 1
    _insert(app, _event("a"), _event("b"))
    out = tmp_path / "x.csv"
    result = runner.invoke(args=["audit", "export", "--output", str(out)])
    assert result.exit_code == 1 and "more than the export limit of 1" in result.output
    assert not out.exists()
