"""``audit_portal/audit/saved/`` and its API and page: an admin's views and the shared ones; another admin's
personal view does not exist for them (404) and a shared one is changed by its owner only (403); one default
per page, opened when the viewer is visited without filters; bad input a 422 naming the field."""

from __future__ import annotations

import pytest

from tests.api_helpers import bearer, make_token
from tests.conftest import csrf_token

URL = "/api/v1/saved-views/"


@pytest.fixture
def ada(app, admin_id):
    return bearer(make_token(app, admin_id))


@pytest.fixture
def grace(app, make_user):
    return bearer(make_token(app, make_user("grace", role="admin")))


def _save(client, headers, **body):
    response = client.post(URL, headers=headers, json={"name": "v", **body})
    assert response.status_code == 201, response.json
    return response.json["data"]


def test_personal_views_are_private_shared_ones_are_seen_by_all_and_changed_by_their_owner(client, ada, grace):
    mine = _save(client, ada, name="mine", q="action:login_failed -ip:10.0.0.0/8")
    shared = _save(client, ada, name="team", q="status:error", shared=True)
    assert {v["name"] for v in client.get(URL, headers=ada).json["data"]} == {"mine", "team"}
    assert [v["name"] for v in client.get(URL, headers=grace).json["data"]] == ["team"]
    assert client.get(f"{URL}{mine['id']}", headers=grace).status_code == 404
    assert client.patch(f"{URL}{mine['id']}", headers=grace, json={"name": "x"}).status_code == 404
    assert client.delete(f"{URL}{mine['id']}", headers=grace).status_code == 404
    assert client.get(f"{URL}{shared['id']}", headers=grace).status_code == 200
    refused = client.patch(f"{URL}{shared['id']}", headers=grace, json={"q": "status:failure"})
    assert refused.status_code == 403 and "owner" in refused.json["message"]
    assert client.delete(f"{URL}{shared['id']}", headers=grace).status_code == 403
    changed = client.patch(f"{URL}{shared['id']}", headers=ada, json={"q": "status:failure", "shared": False})
    assert changed.status_code == 200 and changed.json["data"]["q"] == "status:failure"
    assert client.get(URL, headers=grace).json["data"] == []
    assert shared["url"] == "/admin/audit-logs/?q=status%3Aerror" and shared["owner_id"] == mine["owner_id"]


def test_one_default_per_page_opened_when_the_viewer_is_visited_without_filters(app, ada, admin_client):
    api = app.test_client()  # the API by token alone (admin_client's session cookie would ask for CSRF)
    first = _save(api, ada, name="first", q="action:login", is_default=True)
    second = _save(api, ada, name="second", filters={"status": "FAILURE"}, is_default=True)
    views = {v["name"]: v for v in api.get(URL, headers=ada).json["data"]}
    assert views["first"]["is_default"] is False and views["second"]["is_default"] is True
    opened = admin_client.get("/admin/audit-logs/")
    assert opened.status_code == 302 and opened.headers["Location"] == second["url"] == "/admin/audit-logs/?status=FAILURE"
    assert admin_client.get("/admin/audit-logs/?view=all").status_code == 200  # "clear the filters" still can
    assert first["url"].endswith("?q=action%3Alogin")


@pytest.mark.parametrize(("body", "field"), [
    ({"name": ""}, "name"),
    ({"name": "two\nlines"}, "name"),
    ({"q": "colour:red"}, "q"),
    ({"filters": {"status": "MAYBE"}}, "filters"),
    ({"filters": {"q": "status:error"}}, "filters"),
    ({"page": "somewhere"}, "page"),
    ({"shared": "yes"}, "shared"),
    ({"owner_id": 2}, "owner_id"),
])
def test_bad_input_is_a_422_naming_the_field(client, ada, body, field):
    response = client.post(URL, headers=ada, json={"name": "v", **body})
    assert response.status_code == 422 and field in response.json["errors"], response.json


def test_a_name_is_unique_per_owner_and_page(client, ada, grace):
    _save(client, ada, name="Mine")
    again = client.post(URL, headers=ada, json={"name": "mine"})
    assert again.status_code == 422 and "name" in again.json["errors"]
    assert client.post(URL, headers=ada, json={"name": "mine", "page": "errors"}).status_code == 201
    assert client.post(URL, headers=grace, json={"name": "mine"}).status_code == 201


def test_the_viewer_saves_its_current_query_and_the_page_lists_and_removes_it(admin_client):
    page = admin_client.get("/admin/audit-logs/", query_string={"q": "action:login_failed", "status": "FAILURE"})
    assert 'data-testid="save-view"' in page.get_data(as_text=True)
    token = csrf_token(admin_client, "/admin/saved-views/")
    saved = admin_client.post("/admin/saved-views/", data={
        "csrf_token": token, "name": "refusals", "page": "viewer", "q": "action:login_failed", "f_status": "FAILURE",
        "shared": "on"})
    assert saved.status_code == 302 and saved.headers["Location"] == "/admin/audit-logs/?status=FAILURE&q=action%3Alogin_failed"
    listing = admin_client.get("/admin/saved-views/").get_data(as_text=True)
    assert '<tr data-view="refusals">' in listing and "shared" in listing
    bad = admin_client.post("/admin/saved-views/", data={"csrf_token": token, "name": "x", "q": "colour:red"})
    assert bad.status_code == 422 and "unknown key" in bad.get_data(as_text=True)
    assert admin_client.post("/admin/saved-views/", data={"name": "no token"}).status_code == 400
    view_id = next(v["id"] for v in admin_client.get(URL).json["data"])
    removed = admin_client.post(f"/admin/saved-views/{view_id}/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    assert '<tr data-view="refusals">' not in admin_client.get("/admin/saved-views/").get_data(as_text=True)


def test_the_error_dashboard_saves_its_view_and_opens_its_own_default(app, ada, admin_client):
    page = admin_client.get("/admin/audit-logs/errors", query_string={"q": "severity:critical"}).get_data(as_text=True)
    assert 'data-testid="save-view"' in page and 'name="page" value="errors"' in page
    assert 'value="severity:critical"' in page  # the query box is on the dashboard too
    token = csrf_token(admin_client, "/admin/saved-views/")
    saved = admin_client.post("/admin/saved-views/", data={
        "csrf_token": token, "name": "critical", "page": "errors", "q": "severity:critical", "is_default": "on"})
    assert saved.status_code == 302 and saved.headers["Location"] == "/admin/audit-logs/errors?q=severity%3Acritical"
    opened = admin_client.get("/admin/audit-logs/errors")
    assert opened.status_code == 302 and opened.headers["Location"] == saved.headers["Location"]
    assert admin_client.get("/admin/audit-logs/").status_code == 200  # the viewer's default is another one: none
    assert admin_client.get("/admin/audit-logs/errors?view=all").status_code == 200
