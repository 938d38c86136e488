"""Legal holds through the API (/api/v1/audit-logs/holds/) and the Integrity page: list, place, release; bad input
answers a 4xx (or a message on the page) naming the field, and changes nothing; every change is in the trail."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import func, select

from audit_portal.audit.integrity.models import LegalHold
from audit_portal.audit.record.enums import ResourceType
from audit_portal.extensions import db
from tests.api_helpers import bearer, make_token
from tests.conftest import form_post

API = "/api/v1/audit-logs/holds/"
PAGE = "/admin/audit-logs/integrity"


def count_holds(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LegalHold))


def test_the_api_places_lists_and_releases_holds(app, client, admin_id, audit_rows):
    headers = bearer(make_token(app, admin_id))

    created = client.post(API, json={"from": "2026-01-01", "to": "2026-03-31", "reason": "Case 2026-17"},
                          headers=headers)

    assert created.status_code == 201, created.get_json()
    hold = created.get_json()["data"]
    assert hold["from"].startswith("2026-01-01T00:00:00") and hold["to"].startswith("2026-03-31T23:59:59.999999")
    assert hold["active"] is True and hold["created_by"] == "admin" and hold["reason"] == "Case 2026-17"
    listed = client.get(API, headers=headers).get_json()["data"]
    assert [h["id"] for h in listed] == [hold["id"]]

    released = client.post(f"{API}{hold['id']}/release", headers=headers)
    assert released.status_code == 200, released.get_json()
    assert released.get_json()["data"]["active"] is False
    assert released.get_json()["data"]["released_by"] == "admin"

    again = client.post(f"{API}{hold['id']}/release", headers=headers)
    assert again.status_code == 409
    assert "already released" in again.get_json()["errors"]["id"][0]
    unknown = client.post(f"{API}999/release", headers=headers)
    assert unknown.status_code == 404 and "no legal hold with id 999" in unknown.get_json()["message"]

    trail = audit_rows(resource_type=ResourceType.LEGAL_HOLD.value)
    assert [(e.action_type, e.username, e.resource_id) for e in trail] == [
        ("HOLD_CREATE", "admin", str(hold["id"])), ("HOLD_RELEASE", "admin", str(hold["id"]))]


def test_bad_input_names_the_field_and_changes_nothing(app, client, admin_id, audit_rows):
    headers = bearer(make_token(app, admin_id))
    cases = [
        ({"from": "2026-04-01", "to": "2026-03-31", "reason": "x"}, "from", "after it ends"),
        ({"from": "2026-01-01", "to": "2026-03-31", "reason": " "}, "reason", "Say why"),
        ({"from": "2026-01-01", "to": "2026-03-31", "reason": "x" * 501}, "reason", "500"),
        ({"from": "soon", "to": "2026-03-31", "reason": "x"}, "from", "ISO 8601"),
        ({"to": "2026-03-31", "reason": "x"}, "from", "Missing"),
        ({"from": "2026-01-01", "to": "2026-03-31", "reason": "x", "extra": 1}, "extra", "Unknown"),
    ]
    for body, field, message in cases:
        response = client.post(API, json=body, headers=headers)
        assert response.status_code == 422, (body, response.get_json())
        errors = response.get_json()["errors"]
        assert message in " ".join(errors.get(field) or errors.get("json", {}).get(field, [])), (body, errors)
    assert count_holds(app) == 0
    assert audit_rows(resource_type=ResourceType.LEGAL_HOLD.value) == []


def test_non_admins_cannot_touch_holds(app, client, make_user):
    user_id = make_user("bob")
    headers = bearer(make_token(app, user_id))
    assert client.get(API).status_code == 401
    assert client.get(API, headers=headers).status_code == 403
    assert client.post(API, json={"from": "2026-01-01", "to": "2026-01-02", "reason": "x"},
                       headers=headers).status_code == 403
    assert count_holds(app) == 0


def page_text(client) -> str:
    return html.unescape(client.get(PAGE).get_data(as_text=True))


@pytest.mark.settings(AUDIT_RETENTION_DAYS=180, AUDIT_RETENTION_DAYS_BY_CATEGORY="security=2555,requests=90")
def test_the_page_lists_places_and_releases_holds(app, admin_client, audit_rows):
    first = page_text(admin_client)
    assert "No legal holds." in first
    assert "Retention: requests 90 days, security 2,555 days, other categories 180 days." in " ".join(first.split())

    placed = form_post(admin_client, f"{PAGE}/holds", {"from": "2026-02-01", "to": "2026-02-28",
                                                        "reason": "Case on the page"}, token_url=PAGE)
    assert placed.status_code == 302
    page = page_text(admin_client)
    assert "Legal hold 1 placed." in page and "Case on the page" in page and "Active" in page
    assert "2026-02-28 23:59:59" in page

    refused = form_post(admin_client, f"{PAGE}/holds", {"from": "2026-03-01", "to": "2026-02-01", "reason": "x"},
                        token_url=PAGE)
    assert refused.status_code == 303
    assert "from: The hold starts" in page_text(admin_client)
    assert count_holds(app) == 1

    released = form_post(admin_client, f"{PAGE}/holds/1/release", {}, token_url=PAGE)
    assert released.status_code == 302
    page = page_text(admin_client)
    assert "Legal hold 1 released." in page and "Released" in page
    twice = form_post(admin_client, f"{PAGE}/holds/1/release", {}, token_url=PAGE)
    assert twice.status_code == 303 and "was already released" in page_text(admin_client)

    assert [e.action_type for e in audit_rows(resource_type=ResourceType.LEGAL_HOLD.value)] == [
        "HOLD_CREATE", "HOLD_RELEASE"]


def test_the_page_forms_need_the_csrf_token(app, admin_client):
    response = admin_client.post(f"{PAGE}/holds", data={"from": "2026-02-01", "to": "2026-02-28", "reason": "x"})
    assert response.status_code in (303, 400)
    assert count_holds(app) == 0
