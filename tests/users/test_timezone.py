"""Each user's display time zone (issue 18, item 6): stored on the user (default UTC), set on the user's own
preferences page, by an admin on the user form or through the users API, audited like any profile change, and
applied to every page's times, while the API and exports stay in UTC."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.users.models import User
from tests.api_helpers import bearer, make_token
from tests.conftest import PASSWORD, csrf_token

#: 23:30 UTC on 30 November is 08:30 on 1 December in Tokyo (UTC+9, no daylight saving time).
EVENT_AT = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
PREFERENCES = "/auth/preferences"


def page(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def timezone_of(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).timezone


def insert_event(app, description="Changed the quota") -> int:
    with app.app_context(), db.engine.begin() as conn:
        insert_ignoring_duplicates(conn, [build_event("UPDATE", "SETTING", "quota", description, timestamp=EVENT_AT)])
    with app.app_context():
        return db.session.scalar(db.select(AuditLog.id).where(AuditLog.description == description))


def save_preferences(client, timezone: str):
    return client.post(PREFERENCES, data={"timezone": timezone, "csrf_token": csrf_token(client, PREFERENCES)})


def updates(audit_rows, user_id: int, status="SUCCESS"):
    return [r for r in audit_rows(action_type="UPDATE", resource_type="USER", status=status)
            if r.resource_id == str(user_id)]


# -- the column ------------------------------------------------------------------------------


def test_a_new_user_sees_utc(app, make_user):
    assert timezone_of(app, make_user("bob")) == "UTC"


def test_the_database_default_is_utc_for_rows_written_without_it(app, admin_id):
    """Rows written before the column existed, or by plain SQL, get UTC from the database itself."""
    with app.app_context():
        role_id = db.session.execute(text("SELECT role_id FROM users WHERE id = :id"), {"id": admin_id}).scalar()
        db.session.execute(text(
            "INSERT INTO users (username, email, full_name, password_hash, role_id, status, is_active, session_version,"
            " created_at, updated_at) VALUES ('raw', 'raw@example.com', '', 'x', :role, 'active', :yes, 1, :now, :now)"),
            {"role": role_id, "yes": True, "now": EVENT_AT})
        db.session.commit()
        assert db.session.execute(text("SELECT timezone FROM users WHERE username = 'raw'")).scalar() == "UTC"


# -- the preferences page ------------------------------------------------------------------------


def test_choosing_a_zone_converts_every_time_on_the_pages(app, admin_client, admin_id, audit_rows):
    log_id = insert_event(app)
    before = page(admin_client.get("/admin/audit-logs/"))
    assert "Time (UTC)" in before and ">2026-11-30 23:30:00</time>" in before

    response = save_preferences(admin_client, "Asia/Tokyo")

    assert response.status_code == 302 and response.headers["Location"].endswith(PREFERENCES)
    assert timezone_of(app, admin_id) == "Asia/Tokyo"
    viewer = page(admin_client.get("/admin/audit-logs/"))
    assert "Time (Asia/Tokyo)" in viewer and "Time (UTC)" not in viewer
    assert re.search(r'<time datetime="2026-11-30T23:30:00\+00:00" title="2026-12-01 08:30:00 Asia/Tokyo">'
                     r"2026-12-01 08:30:00</time>", viewer)  # the machine-readable attribute stays UTC
    detail = page(admin_client.get(f"/admin/audit-logs/{log_id}"))
    assert "Time (Asia/Tokyo)</dt>" in detail and "2026-12-01 08:30:00.000000" in detail
    assert "23:30" not in detail.split('datetime="2026-11-30T23:30:00+00:00"')[1]
    [update] = updates(audit_rows, admin_id)
    assert update.user_id == admin_id
    assert update.event_metadata == {"old": {"timezone": "UTC"}, "new": {"timezone": "Asia/Tokyo"}}
    assert update.description == "admin updated user admin: timezone"


def test_the_page_offers_utc_first_and_every_iana_name(admin_client):
    response = admin_client.get(PREFERENCES)
    assert response.status_code == 200
    options = re.findall(r'<option[^>]*value="([^"]+)"', response.get_data(as_text=True))
    assert options[0] == "UTC" and options.count("UTC") == 1
    assert {"Europe/Paris", "Asia/Tokyo", "America/Argentina/ComodRivadavia", "Etc/GMT+5"} <= set(options)
    assert re.findall(r"<option selected value=\"([^\"]+)\"", response.get_data(as_text=True)) == ["UTC"]


def test_any_logged_in_user_sets_their_own_zone_in_any_case(app, client, auth, make_user, audit_rows):
    bob_id = make_user("bob")
    auth.login("bob")
    response = save_preferences(client, " europe/PARIS ")
    assert response.status_code == 302
    assert timezone_of(app, bob_id) == "Europe/Paris"  # stored in its IANA spelling
    assert "Pages now show times in Europe/Paris." in page(client.get(PREFERENCES))
    [update] = updates(audit_rows, bob_id)
    assert update.user_id == bob_id and update.event_metadata["new"] == {"timezone": "Europe/Paris"}


def test_saving_the_same_zone_records_nothing(app, admin_client, admin_id, audit_rows):
    assert save_preferences(admin_client, "UTC").status_code == 302
    assert updates(audit_rows, admin_id) == []


@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "localtime", "../../etc/passwd", "", "Europe/" + "x" * 80])
def test_an_unknown_zone_is_a_form_error_on_the_field(app, admin_client, admin_id, audit_rows, bad):
    response = save_preferences(admin_client, bad)
    assert response.status_code == 400
    body = page(response)
    errors = re.search(r'id="timezone-errors">([^<]+)<', body)
    assert errors, body
    assert "Unknown time zone" in errors.group(1) or "64 characters" in errors.group(1)
    assert timezone_of(app, admin_id) == "UTC"
    assert updates(audit_rows, admin_id) == []
    if len(bad) <= 64:  # a value the form lets through reaches the service, which records the refusal
        [refused] = updates(audit_rows, admin_id, status="FAILURE")
        assert refused.event_metadata["field"] == "timezone"


def test_the_preferences_page_needs_a_login(client):
    response = client.get(PREFERENCES)
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_a_stored_name_this_machine_cannot_load_shows_utc(app, admin_client, admin_id):
    """A zone removed from a later tzdata release must not break every page: it falls back to UTC."""
    insert_event(app)
    with app.app_context():
        db.session.execute(text("UPDATE users SET timezone = 'Nowhere/Gone' WHERE id = :id"), {"id": admin_id})
        db.session.commit()
    response = admin_client.get("/admin/audit-logs/")
    assert response.status_code == 200 and ">2026-11-30 23:30:00</time>" in page(response)


# -- user management -----------------------------------------------------------------------------


def test_an_admin_sets_a_users_zone_on_the_user_form(app, admin_client, admin_id, make_user, audit_rows):
    bob_id = make_user("bob", full_name="Bob")
    form = {"username": "bob", "email": "bob@example.com", "full_name": "Bob", "role": "user", "timezone": "Asia/Tokyo"}
    response = admin_client.post(f"/admin/users/{bob_id}/edit",
                                 data={**form, "csrf_token": csrf_token(admin_client, f"/admin/users/{bob_id}/edit")})
    assert response.status_code == 302
    assert timezone_of(app, bob_id) == "Asia/Tokyo"
    [update] = updates(audit_rows, bob_id)
    assert update.user_id == admin_id
    assert update.event_metadata == {"old": {"timezone": "UTC"}, "new": {"timezone": "Asia/Tokyo"}}
    detail = page(admin_client.get(f"/admin/users/{bob_id}"))
    assert 'data-testid="user-timezone">Asia/Tokyo<' in detail
    assert "Created</dt>" in detail and " UTC</dd>" in detail  # the admin's own zone, not bob's

    refused = admin_client.post(f"/admin/users/{bob_id}/edit", data={
        **form, "timezone": "Asia/Atlantis", "csrf_token": csrf_token(admin_client, f"/admin/users/{bob_id}/edit")})
    assert refused.status_code == 400
    assert re.search(r'id="timezone-errors">Unknown time zone \'Asia/Atlantis\'', page(refused))
    assert timezone_of(app, bob_id) == "Asia/Tokyo"


def test_an_admin_creates_a_user_with_a_zone(app, admin_client, audit_rows):
    password = "fresh-Passw0rd-42"
    response = admin_client.post("/admin/users/new", data={
        "username": "carol", "email": "carol@example.com", "role": "user", "status": "active", "is_active": "y",
        "timezone": "America/New_York", "password": password, "confirm": password,
        "csrf_token": csrf_token(admin_client, "/admin/users/new")})
    assert response.status_code == 302
    [created] = audit_rows(action_type="CREATE", resource_type="USER", resource_id=response.headers["Location"].rsplit("/")[-1])
    assert created.event_metadata["new"]["timezone"] == "America/New_York"


def test_the_users_pages_show_last_logins_in_the_viewers_zone(app, client, auth, make_user):
    make_user("admin", role="admin", timezone="Asia/Tokyo")
    bob_id = make_user("bob")
    with app.app_context():
        db.session.get(User, bob_id).last_login_at = EVENT_AT
        db.session.commit()
    auth.login("admin", PASSWORD)
    listing = page(client.get("/admin/users/"))
    assert "Last login (Asia/Tokyo)" in listing and "2026-12-01 08:30" in listing
    assert "Last login</dt><dd class=\"col-7\">2026-12-01 08:30 Asia/Tokyo</dd>" in page(client.get(f"/admin/users/{bob_id}"))


# -- the API ----------------------------------------------------------------------------------


def test_the_users_api_shows_and_changes_the_zone(app, client, admin_id, make_user, audit_rows):
    headers = bearer(make_token(app, admin_id))
    bob_id = make_user("bob")
    assert client.get(f"/api/v1/users/{bob_id}", headers=headers).json["data"]["timezone"] == "UTC"

    patched = client.patch(f"/api/v1/users/{bob_id}", headers=headers, json={"timezone": "asia/tokyo"})

    assert patched.status_code == 200 and patched.json["data"]["timezone"] == "Asia/Tokyo"
    [update] = updates(audit_rows, bob_id)
    assert (update.event_metadata["old"], update.event_metadata["new"]) == ({"timezone": "UTC"}, {"timezone": "Asia/Tokyo"})
    created = client.post("/api/v1/users/", headers=headers, json={
        "username": "carol", "email": "carol@example.com", "password": "secret-long-pass-1", "timezone": "Europe/Paris"})
    assert created.status_code == 201 and created.json["data"]["timezone"] == "Europe/Paris"
    assert client.get("/api/v1/me", headers=headers).json["data"]["timezone"] == "UTC"


@pytest.mark.parametrize("method, path", [("patch", "/api/v1/users/{id}"), ("post", "/api/v1/users/")])
@pytest.mark.parametrize("bad", ["Mars/Olympus_Mons", "", "x" * 65, "Europe/Paris\x00"])
def test_the_users_api_refuses_an_unknown_zone_naming_the_field(app, client, admin_id, method, path, bad):
    headers = bearer(make_token(app, admin_id))
    body = {"timezone": bad} if method == "patch" else {
        "username": "carol", "email": "carol@example.com", "password": "secret-long-pass-1", "timezone": bad}
    response = getattr(client, method)(path.format(id=admin_id), headers=headers, json=body)
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == ["timezone"]
    assert timezone_of(app, admin_id) == "UTC"


def test_the_api_and_the_exports_stay_in_utc_for_a_user_in_tokyo(app, client, auth, make_user):
    """The zone is a display preference: nothing machine-readable changes with it."""
    admin_id = make_user("admin", role="admin", timezone="Asia/Tokyo")
    log_id = insert_event(app)
    auth.login("admin")
    token = bearer(make_token(app, admin_id))
    assert ">2026-12-01 08:30:00</time>" in page(client.get("/admin/audit-logs/"))  # the page does convert

    for answer in (client.get(f"/api/v1/audit-logs/{log_id}"), client.get(f"/api/v1/audit-logs/{log_id}", headers=token)):
        assert answer.json["data"]["timestamp"] == "2026-11-30T23:30:00+00:00"
    listed = client.get("/api/v1/audit-logs/?action_type=update&resource_type=setting").json["data"]["items"]
    assert [item["timestamp"] for item in listed] == ["2026-11-30T23:30:00+00:00"]
    for url in ("/admin/audit-logs/export?format=csv&resource_type=setting",
                "/api/v1/audit-logs/export?format=csv&resource_type=setting"):
        response = client.get(url)
        assert response.status_code == 200, url
        [row] = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        assert row["timestamp"] == "2026-11-30T23:30:00.000000+00:00", url  # CSV keeps microseconds
    exported = client.get("/api/v1/audit-logs/export?format=json&resource_type=setting").json
    assert [item["timestamp"] for item in exported] == ["2026-11-30T23:30:00+00:00"]
