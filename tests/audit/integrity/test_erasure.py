"""Erasure with four eyes (``audit_portal/audit/integrity/erasure.py``): requested, refused for the requester,
rejected or approved by another admin, carried out so that the personal values and their salts are gone while the
links keep commitments of them; held events untouched and reported; every step in the trail; "[erased]" in pages,
exports and the API."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from audit_portal import create_app
from audit_portal.audit.integrity import erasure_scope
from audit_portal.audit.integrity.models import ErasureRequest, LegalHold
from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.write.service import log_audit
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from audit_portal.users import services as user_services
from audit_portal.users.models import User

from ...conftest import csrf_token
from ..chain_support import CHAIN, LOGS, row, seal
from ..digest_support import KeyPair, run_sealer, stored_digests, verify_with

VERIFIER = Path(__file__).resolve().parents[3] / "scripts" / "verify_audit_export.py"
PERSONAL = ("username", "ip_address", "user_agent", "description", "metadata")


def event(app, action, resource, resource_id, description, *, user_id=None, username=None, metadata=None,
          ip="203.0.113.7", ua="Firefox/128", days_ago=0.0) -> int:
    """Record one event through the service, with a client address and agent; return its id."""
    with app.app_context():
        event_id = log_audit(user_id, action, resource, resource_id, description, metadata, ip_address=ip,
                             user_agent=ua, username=username, transactional=True,
                             timestamp=utcnow() - timedelta(days=days_ago))
        db.session.commit()
        assert app.extensions["audit_writer"].flush()  # out of the outbox (PostgreSQL)
        found = db.session.scalar(select(LOGS.c.id).where(LOGS.c.event_id == event_id))
        db.session.remove()
        return found


def links_of(app, ids) -> dict:
    with app.app_context(), db.engine.connect() as conn:
        return {r.audit_log_id: r for r in conn.execute(select(CHAIN).where(CHAIN.c.audit_log_id.in_(ids)))}


def commitment(salt: str, value) -> str:
    """spec19's formula, written out independently of the app's."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(bytes.fromhex(salt) + encoded).hexdigest()


@pytest.fixture
def people(app, make_user, admin_id):
    """Two admins (admin asks, boss approves), carol (the person) and dave (someone else), and their events."""
    boss_id, carol_id, dave_id = make_user("boss", role="admin"), make_user("carol"), make_user("dave")
    ids = {
        "login": event(app, ActionType.LOGIN, ResourceType.SESSION, carol_id, "carol logged in", user_id=carol_id,
                       username="carol", ua="carol's phone"),
        "about": event(app, ActionType.UPDATE, ResourceType.USER, carol_id, "admin changed the email of carol",
                       user_id=admin_id, username="admin", ip="198.51.100.1",
                       metadata={"old": {"email": "carol@example.com"}, "new": {"email": "c@example.org"},
                                 "target": "carol"}),
        "failed": event(app, ActionType.LOGIN_FAILED, ResourceType.SESSION, None,
                        "Failed login for 'carol': wrong password", ip="192.0.2.55",
                        metadata={"attempted_username": "carol", "reason": "wrong password"}),
        "held": event(app, ActionType.LOGOUT, ResourceType.SESSION, carol_id, "carol logged out", user_id=carol_id,
                      username="carol", days_ago=100),
        "other": event(app, ActionType.LOGIN, ResourceType.SESSION, dave_id, "dave logged in", user_id=dave_id,
                       username="dave", ip="203.0.113.99", metadata={"friend": "carolina"}),
    }
    with app.app_context():
        db.session.add(LegalHold(starts_at=utcnow() - timedelta(days=101), ends_at=utcnow() - timedelta(days=99),
                                 reason="litigation 7", created_by="admin"))
        db.session.commit()
    seal(app)
    return {"admin": admin_id, "boss": boss_id, "carol": carol_id, "dave": dave_id, "ids": ids}


def cli(runner, *args):
    return runner.invoke(args=["audit", "erasure", *args])


def requests(app) -> list[dict]:
    with app.app_context():
        found = [{c.name: getattr(r, c.name) for c in ErasureRequest.__table__.columns}
                 for r in db.session.scalars(select(ErasureRequest).order_by(ErasureRequest.id))]
        db.session.remove()
        return found


def trail(app, action: ActionType) -> list[dict]:
    with app.app_context(), db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(LOGS).where(LOGS.c.action_type == action.value))]


def snapshot(app, ids) -> dict:
    return {i: (row(app, i), links_of(app, [i])[i]) for i in ids}


# -- the CLI, end to end ------------------------------------------------------------------------------------------


def test_requested_refused_for_the_requester_then_approved_by_another_admin(app, runner, people):
    ids = people["ids"]
    before = snapshot(app, ids.values())
    asked = cli(runner, "request", "--user-id", str(people["carol"]), "--by", "admin", "--reason", "GDPR ticket 9")
    assert asked.exit_code == 0, asked.output
    request_id = int(asked.stdout.split()[0])
    [made] = requests(app)
    assert (made["id"], made["status"], made["subject_username"], made["requested_by"]) == \
        (request_id, "pending", "carol", "admin")

    refused = cli(runner, "approve", str(request_id), "--by", "admin")
    assert refused.exit_code != 0
    assert "another admin must approve it" in refused.output
    assert snapshot(app, ids.values()) == before  # nothing changed
    assert requests(app)[0]["status"] == "pending"

    approved = cli(runner, "approve", str(request_id), "--by", "boss")
    assert approved.exit_code == 0, approved.output
    # her login, the change to her account, the failed login and her account's creation
    assert "erased from 4 events" in approved.output and "1 events in a legal hold" in approved.output

    # carol's own login: the personal columns are NULL, her name in the description is gone
    login = row(app, ids["login"])
    assert (login["username"], login["ip_address"], login["user_agent"]) == (None, None, None)
    assert login["description"] == "[erased] logged in"
    assert login["user_id"] == people["carol"] and login["event_id"] == before[ids["login"]][0]["event_id"]
    # the admin's change to her account: the admin stays, her name and email are redacted
    about = row(app, ids["about"])
    assert (about["username"], about["ip_address"]) == ("admin", "198.51.100.1")
    assert about["description"] == "admin changed the email of [erased]"
    assert about["metadata"] == {"old": {"email": "[erased]@example.com"}, "new": {"email": "c@example.org"},
                                 "target": "[erased]"}
    # a failed login that typed her name: the name goes, the address (evidence of an attack) stays
    failed = row(app, ids["failed"])
    assert failed["description"] == "Failed login for '[erased]': wrong password"
    assert failed["metadata"]["attempted_username"] == "[erased]" and failed["ip_address"] == "192.0.2.55"
    # the held event and dave's are untouched (and "carolina" is not carol)
    assert snapshot(app, [ids["held"], ids["other"]]) == {i: before[i] for i in (ids["held"], ids["other"])}

    # every changed field: its salt is gone, the commitment of its ORIGINAL value is there; other columns unchanged
    changed = {"login": ("username", "ip_address", "user_agent", "description"), "about": ("description", "metadata"),
               "failed": ("description", "metadata")}
    for name, fields in changed.items():
        old_row, old_link = before[ids[name]]
        new_row, new_link = row(app, ids[name]), links_of(app, [ids[name]])[ids[name]]
        assert set(new_link.erased) == set(fields), name
        assert set(new_link.salts) == set(PERSONAL) - set(fields), name
        for field in fields:
            assert new_link.erased[field] == commitment(old_link.salts[field], old_row[field]), (name, field)
        assert {k: v for k, v in new_row.items() if k not in PERSONAL} == \
            {k: v for k, v in old_row.items() if k not in PERSONAL}
        assert (new_link.link_hash, new_link.row_hash, new_link.public_hash) == \
            (old_link.link_hash, old_link.row_hash, old_link.public_hash)

    [done] = requests(app)
    assert (done["status"], done["decided_by"], done["erased_count"], done["held_count"], done["held_events"]) == \
        ("done", "boss", 4, 1, [ids["held"]])
    # the trail: the request and the erasure, naming the request and both admins, without her name
    [asked_event] = trail(app, ActionType.ERASURE_REQUEST)
    [erasure_event] = trail(app, ActionType.ERASURE)
    assert asked_event["username"] == "admin" and asked_event["resource_id"] == str(request_id)
    assert (erasure_event["username"], erasure_event["resource_type"], erasure_event["resource_id"]) == \
        ("boss", "ERASURE_REQUEST", str(request_id))
    assert erasure_event["metadata"]["requested_by"] == "admin" and erasure_event["metadata"]["approved_by"] == "boss"
    assert erasure_event["metadata"]["erased"] == 4 and erasure_event["metadata"]["held_events"] == [ids["held"]]
    assert "carol" not in json.dumps([asked_event["description"], erasure_event["description"],
                                      erasure_event["metadata"]])

    # both chains still verify: the commitments stand in for the erased values
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "OK" in verified.output

    again = cli(runner, "approve", str(request_id), "--by", "boss")
    assert again.exit_code != 0 and "is done, not pending" in again.output
    listed = cli(runner, "list")
    assert f"{request_id}  done" in listed.output


def test_a_rejected_request_changes_nothing(app, runner, people):
    ids = people["ids"]
    before = snapshot(app, ids.values())
    asked = cli(runner, "request", "--username", "carol", "--by", "boss", "--reason", "asked by phone")
    request_id = int(asked.stdout.split()[0])
    rejected = cli(runner, "reject", str(request_id), "--by", "admin")
    assert rejected.exit_code == 0, rejected.output
    assert requests(app)[0]["status"] == "rejected" and requests(app)[0]["decided_by"] == "admin"
    assert snapshot(app, ids.values()) == before
    [rejection] = trail(app, ActionType.ERASURE_REJECT)
    assert rejection["username"] == "admin" and rejection["resource_id"] == str(request_id)
    late = cli(runner, "approve", str(request_id), "--by", "admin")
    assert late.exit_code != 0 and "rejected, not pending" in late.output
    assert trail(app, ActionType.ERASURE) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--username", "nobody-at-all"], "No audit event names username 'nobody-at-all'"),
    (["--user-id", "987654"], "No audit event names user id 987654"),
])
def test_a_request_for_someone_without_events_is_refused(app, runner, people, args, message):
    refused = cli(runner, "request", *args, "--by", "admin", "--reason", "r")
    assert refused.exit_code != 0
    assert message in refused.output and "nothing to erase" in refused.output
    assert requests(app) == [] and trail(app, ActionType.ERASURE_REQUEST) == []


def test_only_admins_request_or_decide(app, runner, people):
    refused = cli(runner, "request", "--username", "carol", "--by", "dave", "--reason", "r")
    assert refused.exit_code != 0 and "'dave' is not an admin" in refused.output
    missing = cli(runner, "request", "--by", "admin", "--reason", "r")
    assert missing.exit_code != 0 and "--user-id or --username" in missing.output
    assert requests(app) == []


# -- the API and the pages ----------------------------------------------------------------------------------------


def test_the_api_flow_and_erased_values_in_the_api_pages_and_exports(app, client, auth, people):
    ids = people["ids"]
    auth.login("admin")
    headers = {"X-CSRFToken": csrf_token(client, "/admin/audit-logs/integrity")}
    bad = client.post("/api/v1/erasure-requests/", json={"reason": "x"}, headers=headers)
    assert bad.status_code == 422 and "user_id" in bad.get_json()["errors"]
    nobody = client.post("/api/v1/erasure-requests/", json={"username": "ghost", "reason": "x"}, headers=headers)
    assert nobody.status_code == 422 and "nothing to erase" in nobody.get_json()["message"]
    made = client.post("/api/v1/erasure-requests/", json={"user_id": people["carol"], "reason": "ticket 5"},
                       headers=headers)
    assert made.status_code == 201, made.get_json()
    request_id = made.get_json()["data"]["id"]
    twice = client.post("/api/v1/erasure-requests/", json={"user_id": people["carol"], "reason": "again"},
                        headers=headers)
    assert twice.status_code == 409 and f"request {request_id}" in twice.get_json()["message"]

    own = client.post(f"/api/v1/erasure-requests/{request_id}/approve", headers=headers)
    assert own.status_code == 403 and "another admin must approve it" in own.get_json()["message"]
    assert row(app, ids["login"])["username"] == "carol"
    assert client.post("/api/v1/erasure-requests/999/approve", headers=headers).status_code == 404

    auth.logout()
    auth.login("boss")
    page = client.get("/admin/audit-logs/integrity").get_data(as_text=True)
    assert f'data-testid="erasure-request-{request_id}"' in page and "Approve and erase" in page
    approved = client.post(f"/admin/audit-logs/integrity/erasure-requests/{request_id}/approve",
                           data={"csrf_token": csrf_token(client, "/admin/audit-logs/integrity")})
    assert approved.status_code == 303
    listed = client.get("/api/v1/erasure-requests/").get_json()["data"]
    assert listed[0]["status"] == "done" and listed[0]["held_events"] == [ids["held"]]

    item = client.get(f"/api/v1/audit-logs/{ids['login']}").get_json()["data"]
    assert (item["username"], item["ip_address"], item["user_agent"], item["actor"]) == ("[erased]",) * 4
    assert item["description"] == "[erased] logged in" and item["readable_description"] == "[erased] logged in"
    listing = client.get(f"/api/v1/audit-logs/?user_id={people['carol']}").get_json()["data"]["items"]
    assert {i["id"]: i["username"] for i in listing} == {ids["login"]: "[erased]", ids["held"]: "carol"}
    # a NULL that no erasure made stays null: dave's account was created from no client, and is not erased
    created = client.get("/api/v1/audit-logs/?action_type=CREATE&resource_type=USER").get_json()["data"]["items"]
    dave = next(i for i in created if i["resource_id"] == str(people["dave"]))
    assert (dave["ip_address"], dave["user_agent"], dave["description"]) == \
        (None, None, "the command line created user dave (user)")

    viewer = client.get(f"/admin/audit-logs/?user_id={people['carol']}").get_data(as_text=True)
    assert "[erased]" in viewer and "203.0.113.7" in viewer  # the held event keeps its address
    assert viewer.count("203.0.113.7") == 1
    detail = client.get(f"/admin/audit-logs/{ids['login']}").get_data(as_text=True)
    assert detail.count("[erased]") >= 3 and "203.0.113.7" not in detail and "carol&#39;s phone" not in detail

    exported = client.get(f"/api/v1/audit-logs/export?format=csv&user_id={people['carol']}").get_data(as_text=True)
    by_id = {r["id"]: r for r in csv.DictReader(io.StringIO(exported))}
    login = by_id[str(ids["login"])]
    assert (login["username"], login["ip_address"], login["user_agent"], login["description"]) == \
        ("[erased]", "[erased]", "[erased]", "[erased] logged in")
    assert by_id[str(ids["held"])]["username"] == "carol"
    for fmt in ("json", "ndjson"):
        text = client.get(f"/api/v1/audit-logs/export?format={fmt}&user_id={people['carol']}").get_data(as_text=True)
        items = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
        erased = next(i for i in items if i["id"] == ids["login"])
        assert {k: erased[k] for k in ("username", "ip_address", "user_agent", "actor")} == \
            dict.fromkeys(("username", "ip_address", "user_agent", "actor"), "[erased]"), fmt
        assert "carol" not in json.dumps(erased)


def test_the_requester_sees_no_approve_button_and_is_refused_on_the_page(app, client, auth, people):
    runner = app.test_cli_runner()
    request_id = int(cli(runner, "request", "--user-id", str(people["carol"]), "--by", "admin",
                         "--reason", "r").stdout.split()[0])
    auth.login("admin")
    page = client.get("/admin/audit-logs/integrity").get_data(as_text=True)
    assert "Another admin must approve your request" in page
    refused = client.post(f"/admin/audit-logs/integrity/erasure-requests/{request_id}/approve",
                          data={"csrf_token": csrf_token(client, "/admin/audit-logs/integrity")},
                          follow_redirects=True)
    assert "another admin must approve it" in refused.get_data(as_text=True)
    assert requests(app)[0]["status"] == "pending" and row(app, people["ids"]["login"])["username"] == "carol"
    no_token = client.post(f"/admin/audit-logs/integrity/erasure-requests/{request_id}/reject")
    assert no_token.status_code == 400 and requests(app)[0]["status"] == "pending"


def test_an_erasure_reaches_the_events_of_a_deleted_account_by_its_username(app, runner, people, monkeypatch):
    """The account is gone, so its events' user_id is NULL: the username finds them, the id their links were sealed
    with finds the events about the account, and the failed logins are found by the name typed. (Two events a round:
    the rounds pick up where the last one ended.)"""
    monkeypatch.setattr(erasure_scope, "BATCH", 2)
    ids = people["ids"]
    with app.app_context():
        user_services.delete_user(db.session.get(User, people["admin"]), db.session.get(User, people["carol"]))
        db.session.commit()
    seal(app)
    assert row(app, ids["login"])["user_id"] is None
    asked = cli(runner, "request", "--username", "carol", "--by", "admin", "--reason", "r")
    assert asked.exit_code == 0, asked.output
    request_id = int(asked.stdout.split()[0])
    assert requests(app)[0]["subject_user_id"] == people["carol"]  # from the links
    assert cli(runner, "approve", str(request_id), "--by", "boss").exit_code == 0
    login, about, failed = row(app, ids["login"]), row(app, ids["about"]), row(app, ids["failed"])
    assert (login["username"], login["ip_address"], login["description"]) == (None, None, "[erased] logged in")
    assert about["description"] == "admin changed the email of [erased]"
    assert failed["metadata"]["attempted_username"] == "[erased]"
    # her login, the change, the failed login, her account's creation and its deletion
    assert requests(app)[0]["erased_count"] == 5


# -- PostgreSQL: through the append-only triggers of a migrated database ------------------------------------------


@pytest.fixture
def migrated(postgres_url, tmp_path):
    """An app on a fresh PostgreSQL database built by the real migrations, so the append-only triggers guard it."""
    if not postgres_url:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    base = make_url(postgres_url)
    name = f"{base.database}_erasure"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    app = create_app({"APP_ENV": "testing", "SECRET_KEY": "test-secret-key-that-is-long-enough-000000",
                      "SQLALCHEMY_DATABASE_URI": base.set(database=name).render_as_string(hide_password=False),
                      "AUDIT_DATA_DIR": str(tmp_path / "audit-data")})
    upgrade = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    yield app
    app.extensions["audit_writer"].close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.postgres_only
def test_the_erasure_passes_the_append_only_triggers_and_nothing_else_does(migrated):
    app, runner = migrated, migrated.test_cli_runner()
    with app.app_context():
        for name, role in (("admin", "admin"), ("boss", "admin"), ("carol", "user")):
            user_services.create_user(None, username=name, email=f"{name}@example.com", password="s3cure-Passw0rd!",
                                      role=role)
        db.session.commit()
        carol_id = db.session.scalar(select(User.id).where(User.username == "carol"))
    login = event(app, ActionType.LOGIN, ResourceType.SESSION, carol_id, "carol logged in", user_id=carol_id,
                  username="carol")
    seal(app)
    request_id = int(cli(runner, "request", "--user-id", str(carol_id), "--by", "admin", "--reason", "r")
                     .stdout.split()[0])
    approved = cli(runner, "approve", str(request_id), "--by", "boss")
    assert approved.exit_code == 0, approved.output
    erased = row(app, login)
    assert (erased["username"], erased["ip_address"], erased["description"]) == (None, None, "[erased] logged in")
    assert set(links_of(app, [login])[login].erased) == {"username", "ip_address", "user_agent", "description"}
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    # the switch was the erasure's transaction's only: the same change by hand is refused again
    with pytest.raises(DBAPIError, match="audit_logs is append-only: UPDATE refused"):
        with app.app_context(), db.engine.begin() as conn:
            conn.execute(update(LOGS).where(LOGS.c.id == login).values(description="edited"))


def test_digests_signed_before_the_erasure_still_verify_online_and_offline(app, runner, people, tmp_path):
    """The sealer signed the chain before the erasure: `audit verify` (with the public key) and the standalone
    verifier, given the export made after it (erased values, their commitments in place of the salts), pass, whole
    and filtered."""
    key = KeyPair(tmp_path / "key")
    assert run_sealer(app, runner, key).exit_code == 0
    signed = stored_digests(app)
    assert signed
    request_id = int(cli(runner, "request", "--user-id", str(people["carol"]), "--by", "admin", "--reason", "r")
                     .stdout.split()[0])
    assert cli(runner, "approve", str(request_id), "--by", "boss").exit_code == 0
    assert run_sealer(app, runner, key).exit_code == 0  # the erasure's own events
    assert stored_digests(app)[:len(signed)] == signed  # what was signed before stays as it was
    verified = verify_with(app, runner, key.public)
    assert verified.exit_code == 0, verified.output
    for name, filters in (("all", []), ("carol", ["--user-id", str(people["carol"])])):
        events, digests = tmp_path / f"{name}.ndjson", tmp_path / f"digests-{name}"
        exported = runner.invoke(args=["audit", "export", "--format", "ndjson", "--with-digests", str(digests),
                                       "-o", str(events), *filters])
        assert exported.exit_code == 0, exported.output
        lines = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
        login = next(line for line in lines if line.get("event", {}).get("id") == people["ids"]["login"])
        assert login["event"]["username"] is None and "username" not in login["salts"] and login["erased"]["username"]
        checked = subprocess.run([sys.executable, str(VERIFIER), "--events", str(events), "--digests", str(digests),
                                  "--public-key", str(key.public)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert re.match(r"OK: [1-9]\d* events .*; [1-9]\d* event\(s\) with erased fields", checked.stdout), \
            checked.stdout
