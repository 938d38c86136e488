"""``audit_portal/audit/web/alerts.py``: the alerts page (open first, filters, acknowledge and resolve with CSRF),
the rules page (tune, add, remove), and the nav bar's count of open alerts."""

from __future__ import annotations

import re

from tests.conftest import csrf_token, form_post

from .conftest import alerts, evaluate
from .test_rules import failed_logins


def _open_attack(app):
    failed_logins(app, 20, distinct=True)
    evaluate(app)


def test_the_nav_shows_open_alerts_and_the_page_lists_them_with_links(app, admin_client):
    page = admin_client.get("/admin/alerts/").get_data(as_text=True)
    assert 'data-testid="open-alerts"' not in page and "No alerts" in page
    _open_attack(app)
    page = admin_client.get("/admin/alerts/").get_data(as_text=True)
    opened = [a for a in alerts(app) if a["state"] == "open"]
    assert {"brute_force_ip", "password_spraying"} <= {a["rule"] for a in opened}  # (and new_admin: the admin)
    assert re.search(rf'data-testid="open-alerts"[^>]*>{len(opened)}<', page)
    assert 'data-rule="brute_force_ip"' in page and "203.0.113.5" in page
    assert "/admin/audit-logs/?date_from=" in page and "ip_address=203.0.113.5" in page
    assert 'data-severity="CRITICAL"' in page  # password spraying, coloured like the rest of the UI


def test_acknowledge_and_resolve_from_the_page_with_csrf(app, admin_client):
    _open_attack(app)
    alert = alerts(app, "brute_force_ip")[0]
    missing = admin_client.post(f"/admin/alerts/{alert['id']}/acknowledge")
    assert missing.status_code == 400 and alerts(app, "brute_force_ip")[0]["state"] == "open"
    done = form_post(admin_client, f"/admin/alerts/{alert['id']}/acknowledge", {}, token_url="/admin/alerts/")
    assert done.status_code == 302 and alerts(app, "brute_force_ip")[0]["state"] == "acknowledged"
    form_post(admin_client, f"/admin/alerts/{alert['id']}/resolve", {}, token_url="/admin/alerts/")
    assert alerts(app, "brute_force_ip")[0]["state"] == "resolved"
    again = form_post(admin_client, f"/admin/alerts/{alert['id']}/resolve", {}, token_url="/admin/alerts/")
    assert "resolved already" in admin_client.get(again.headers["Location"]).get_data(as_text=True)


def test_the_alerts_page_filters_by_state_and_rule_and_refuses_an_unknown_state(app, admin_client):
    _open_attack(app)
    page = admin_client.get("/admin/alerts/?rule=password_spraying").get_data(as_text=True)
    assert 'data-rule="password_spraying"' in page and 'data-rule="brute_force_ip"' not in page
    assert "No alerts match" in admin_client.get("/admin/alerts/?state=resolved").get_data(as_text=True)
    bad = admin_client.get("/admin/alerts/?state=sleeping")
    assert bad.status_code == 422 and "state" in bad.get_data(as_text=True)


def test_rules_are_tuned_added_and_removed_on_the_rules_page(app, admin_client):
    page = admin_client.get("/admin/alert-rules/").get_data(as_text=True)
    assert page.count("built-in</span>") == 11
    rule_id = int(re.search(r'<tr data-rule="brute_force_ip">.*?/admin/alert-rules/(\d+)/update', page, re.S).group(1))
    token = csrf_token(admin_client, "/admin/alert-rules/")
    saved = admin_client.post(f"/admin/alert-rules/{rule_id}/update", data={
        "csrf_token": token, "threshold": "7", "window_seconds": "120", "severity": "CRITICAL", "enabled": "on"})
    assert saved.status_code == 302
    page = admin_client.get("/admin/alert-rules/").get_data(as_text=True)
    row = re.search(r'<tr data-rule="brute_force_ip">.*?</tr>', page, re.S).group(0)
    assert 'value="7"' in row and 'value="120"' in row
    for threshold in ("0", "²", "ten"):  # "²".isdigit() is true, and int("²") raises
        bad = admin_client.post(f"/admin/alert-rules/{rule_id}/update", data={
            "csrf_token": token, "threshold": threshold, "window_seconds": "120", "severity": "CRITICAL"})
        assert bad.status_code == 422 and "threshold" in bad.get_data(as_text=True), threshold
    added = admin_client.post("/admin/alert-rules/", data={
        "csrf_token": token, "name": "exports", "filters": "action_type=EXPORT", "group_by": "username",
        "threshold": "3", "window_seconds": "600", "severity": "WARNING"})
    assert added.status_code == 302
    page = admin_client.get("/admin/alert-rules/").get_data(as_text=True)
    assert '<tr data-rule="exports">' in page and "action_type=EXPORT" in page
    refused = admin_client.post("/admin/alert-rules/", data={
        "csrf_token": token, "name": "bad", "filters": "date_from=2026-01-01", "threshold": "3",
        "window_seconds": "0", "severity": "WARNING"})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "window_seconds" in text and "date_from" in text
    exports_id = int(re.search(r'<tr data-rule="exports">.*?/admin/alert-rules/(\d+)/remove', page, re.S).group(1))
    removed = admin_client.post(f"/admin/alert-rules/{exports_id}/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    assert '<tr data-rule="exports">' not in admin_client.get("/admin/alert-rules/").get_data(as_text=True)


def test_the_alert_pages_are_for_admins_only(client, auth, make_user):
    make_user("plain", role="user")
    auth.login("plain")
    assert client.get("/admin/alerts/").status_code == 403
    assert client.get("/admin/alert-rules/").status_code == 403
