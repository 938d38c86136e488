"""The integrity page: admins see the last verification of the hash chain and can run one; a tampered
database shows the problems; nobody else gets in."""

from __future__ import annotations

import html
import re

from sqlalchemy import select, update

from audit_portal.audit.record.enums import ActionType
from audit_portal.extensions import db
from tests.conftest import AuthActions, csrf_token, form_post

from ..chain_support import LOGS, links, record_events, seal, tamper

PAGE = "/admin/audit-logs/integrity"
VERIFY = "/admin/audit-logs/integrity/verify"


def verifications(app) -> list:
    with app.app_context(), db.engine.connect() as conn:
        return list(conn.execute(select(LOGS.c.user_id, LOGS.c.username, LOGS.c.status, LOGS.c["metadata"])
                                 .where(LOGS.c.action_type == ActionType.AUDIT_VERIFY.value).order_by(LOGS.c.id)))


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_admins_see_the_last_verification(app, admin_client, runner):
    before = admin_client.get(PAGE)
    assert before.status_code == 200
    assert "Never verified." in text_of(before)

    record_events(app, 3)
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    page = text_of(admin_client.get(PAGE))

    assert "Intact" in page and "Problems found" not in page
    [(_, _, status, metadata)] = verifications(app)
    assert status == "SUCCESS"
    assert f"{metadata['checked']:,} events checked." in page
    assert f"Head: link {metadata['head_seq']}" in page


def test_verify_now_runs_a_verification_and_shows_it(app, admin_client, admin_id):
    record_events(app, 4)

    response = form_post(admin_client, VERIFY, {}, token_url=PAGE)

    assert response.status_code == 302 and response.headers["Location"].endswith(PAGE)
    page = text_of(admin_client.get(PAGE))
    [(user_id, username, status, metadata)] = verifications(app)
    assert (user_id, username, status, metadata["ok"]) == (admin_id, "admin", "SUCCESS", True)
    assert f"The audit chain is intact ({metadata['checked']:,} events checked)." in page
    assert "Intact" in page and "by admin" in page
    assert re.search(r"Events waiting to be sealed: \d+", page)  # the request events written since


def test_verify_now_needs_the_csrf_token(app, admin_client):
    response = admin_client.post(VERIFY, data={})
    assert response.status_code in (400, 303)
    assert verifications(app) == []


def test_a_tampered_database_shows_problems_found(app, admin_client):
    ids = record_events(app, 4)
    seal(app)
    tamper(app, update(LOGS).where(LOGS.c.id == ids[1]).values(description="Nothing happened"))

    response = form_post(admin_client, VERIFY, {}, token_url=PAGE)
    assert response.status_code == 302
    page = text_of(admin_client.get(PAGE))

    seq = next(link.seq for link in links(app) if link.audit_log_id == ids[1])
    problem = f"Event {ids[1]} (link {seq}) was changed after it was recorded."
    assert "Problems found" in page and "Intact" not in page.split("Last verification", 1)[1].split("Chain", 1)[0]
    assert f"Verification found 1 problem(s): {problem}" in page  # the flash message
    assert f"<li>{problem}</li>" in page  # the stored result
    [(_, _, status, metadata)] = verifications(app)
    assert status == "FAILURE" and metadata["problems"] == [problem]


def test_non_admins_cannot_see_or_run_it(app, client, make_user):
    assert client.get(PAGE).status_code == 302  # anonymous: to the login page
    assert client.post(VERIFY, data={}).status_code in (302, 400)
    make_user("alice")
    auth = AuthActions(client)
    assert auth.login("alice").status_code == 302
    assert client.get(PAGE).status_code == 403
    token = csrf_token(client, "/auth/password")
    assert client.post(VERIFY, data={"csrf_token": token}).status_code == 403
    assert verifications(app) == []
