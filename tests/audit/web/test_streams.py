"""``audit_portal/audit/web/streams.py``: the /admin/streams/ page adds destinations with the API's rules, shows
state and lag, and pauses, resumes, tests and removes them."""

from __future__ import annotations

import html

from tests.conftest import csrf_token

PAGE = "/admin/streams/"


def test_only_admins_see_the_page(client, auth, make_user):
    assert client.get(PAGE).status_code == 302  # to the login page
    make_user("bob")
    auth.login("bob")
    assert client.get(PAGE).status_code == 403


def test_add_a_webhook_shows_its_secret_once_then_lists_it(admin_client):
    token = csrf_token(admin_client, PAGE)
    response = admin_client.post(PAGE, data={
        "csrf_token": token, "name": "splunk", "kind": "webhook", "format": "json", "start": "now",
        "url": "https://siem.example.com/hook", "filters": "category=security\n", "headers": "Authorization: Splunk x"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'data-testid="secret">whsec_' in body
    listing = admin_client.get(PAGE).get_data(as_text=True)
    assert 'data-stream="splunk"' in listing and "only category=security" in listing
    assert "whsec_" not in listing and "Splunk x" not in listing
    assert 'data-state="active"' in listing


def test_bad_input_is_a_422_page_naming_the_field(admin_client):
    token = csrf_token(admin_client, PAGE)
    response = admin_client.post(PAGE, data={"csrf_token": token, "name": "x", "kind": "webhook", "format": "json",
                                             "start": "now", "url": "http://siem.example.com/x", "filters": "oops"})
    assert response.status_code == 422
    errors = html.unescape(response.get_data(as_text=True))
    assert "<strong>url</strong>: Plain http:// is accepted only for a loopback address" in errors
    assert "<strong>filters</strong>: One per line" in errors


def test_pause_resume_and_remove_from_the_page(admin_client, tmp_path):
    token = csrf_token(admin_client, PAGE)
    admin_client.post(PAGE, data={"csrf_token": token, "name": "file", "kind": "file", "format": "cef",
                                  "start": "now", "path": "audit.cef"})
    assert 'data-stream="file"' in admin_client.get(PAGE).get_data(as_text=True)
    paused = admin_client.post(f"{PAGE}1/pause", data={"csrf_token": token}, follow_redirects=True)
    assert 'data-state="paused"' in paused.get_data(as_text=True)
    resumed = admin_client.post(f"{PAGE}1/resume", data={"csrf_token": token}, follow_redirects=True)
    assert 'data-state="active"' in resumed.get_data(as_text=True)
    tested = admin_client.post(f"{PAGE}1/test", data={"csrf_token": token}, follow_redirects=True)
    assert "file: sent a test message." in tested.get_data(as_text=True)
    removed = admin_client.post(f"{PAGE}1/remove", data={"csrf_token": token}, follow_redirects=True)
    assert 'data-testid="empty"' in removed.get_data(as_text=True)
