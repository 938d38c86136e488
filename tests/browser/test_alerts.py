"""The alerts page in a real browser: a brute-force attempt through the login form opens an alert; the admin
sees it counted in the nav bar, acknowledges it and follows it to exactly its events."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def _evaluate_until(live_app, rule: str, timeout_s: float = 15) -> str:
    """Run ``flask alerts evaluate`` until ``rule`` has an open alert (the server writes its events a moment after
    each request); returns ``flask alerts list``."""
    deadline = time.monotonic() + timeout_s
    while True:
        live_app.flask("alerts", "evaluate")
        listed = live_app.flask("alerts", "list")
        if rule in listed or time.monotonic() > deadline:
            return listed
        time.sleep(0.3)


def test_admin_sees_acknowledges_and_follows_a_brute_force_alert(page, new_page, live_app, log_in, screenshot):
    attacker = new_page()
    for i in range(20):
        log_in(attacker, type(live_app.admin)(f"sprayed{i}", "wrong-password-1"))
        expect(attacker.get_by_role("alert")).to_contain_text("Invalid username or password")
    assert "brute_force_ip" in _evaluate_until(live_app, "brute_force_ip")

    log_in(page, live_app.admin)
    nav = page.get_by_role("navigation", name="Main navigation")
    badge = nav.get_by_test_id("open-alerts")
    expect(badge).to_be_visible()
    assert int(re.match(r"\d+", badge.inner_text()).group(0)) >= 2  # brute_force_ip and password_spraying
    nav.get_by_test_id("nav-alerts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    row = page.locator("tr[data-rule='brute_force_ip'][data-state='open']")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("count")).to_have_text("20")
    expect(row.locator("[data-severity='ERROR']")).to_be_visible()
    screenshot(page, "alerts")

    row.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("alert").first).to_contain_text("acknowledged")
    acknowledged = page.locator("tr[data-rule='brute_force_ip'][data-state='acknowledged']")
    expect(acknowledged.get_by_test_id("state")).to_have_text("acknowledged")
    expect(acknowledged).to_contain_text(f"by {live_app.admin.username}")

    acknowledged.get_by_role("link", name="Events").click()
    expect(page).to_have_url(re.compile(r"/admin/audit-logs/\?.*ip_address=127\.0\.0\.1"))
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 20
    expect(rows.filter(has_text="LOGIN_FAILED")).to_have_count(rows.count())  # exactly the alert's events
