"""Issue 18 in a real browser: a query typed with the suggestions (a negation and an IP range), its chips and
histogram, a saved view opened from another page, and the live tail showing a new event without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.live_server import Account

pytestmark = pytest.mark.browser

QUERY = "action:LOGIN_FAILED -ip:10.0.0.0/8 ip:127.0.0.0/8"


def test_query_chips_saved_view_and_live_tail(page, new_page, live_app, log_in, screenshot):
    # Something to find: a failed login from this machine (127.0.0.1) before the admin arrives.
    stranger = new_page()
    log_in(stranger, Account("nobody-yet", "wrong password"))
    log_in(page, live_app.admin)
    page.goto("/admin/audit-logs/?view=all")

    # Type with the suggestions: "acti" offers the key action:, then "login_f" the value LOGIN_FAILED.
    box = page.get_by_role("combobox", name="Query")
    suggestions = page.get_by_role("listbox", name="Suggestions")
    box.click()
    box.press_sequentially("acti")
    expect(suggestions.get_by_role("option", name="action:")).to_be_visible()
    box.press("ArrowDown")
    box.press("Enter")
    expect(box).to_have_value("action:")
    box.press_sequentially("login_f")
    expect(suggestions.get_by_role("option", name="LOGIN_FAILED", exact=True)).to_be_visible()
    box.press("ArrowDown")
    box.press("Enter")
    expect(box).to_have_value("action:LOGIN_FAILED ")
    box.press_sequentially("-ip:10.0.0.0/8 ip:127.0.0.0/8")
    box.press("Enter")  # no suggestion chosen: Enter submits the filter form

    expect(page).to_have_url(re.compile(r"q=action%3ALOGIN_FAILED"))
    chips = page.get_by_test_id("query-chip")
    expect(chips).to_have_count(3)
    expect(chips.nth(1)).to_contain_text("-ip:10.0.0.0/8")
    expect(page.get_by_test_id("histogram")).to_be_visible()
    expect(page.get_by_test_id("audit-table").locator("tbody tr").first).to_contain_text("LOGIN_FAILED")

    # Save the view, then open it from the saved-views page.
    page.get_by_test_id("save-view").locator("summary").click()
    page.get_by_test_id("save-view").get_by_label("Name").fill("Local refusals")
    page.get_by_role("button", name="Save view").click()
    expect(page).to_have_url(re.compile(r"/admin/audit-logs/\?q="))
    page.goto("/admin/saved-views/")
    page.get_by_role("link", name="Local refusals").click()
    expect(page.get_by_role("combobox", name="Query")).to_have_value(QUERY)
    expect(page.get_by_test_id("query-chip")).to_have_count(3)

    # Live tail: a new failed login appears at the top within seconds, and the status says so.
    before = page.get_by_test_id("audit-table").locator("tbody tr").count()
    page.get_by_role("button", name="Live tail").click()
    expect(page.get_by_role("button", name="Stop live tail")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#tail-status")).to_have_text("Live tail on: waiting for new events.")
    log_in(stranger, Account("mallory", "still wrong"))
    first = page.get_by_test_id("audit-table").locator("tbody tr").first
    expect(first).to_contain_text("LOGIN_FAILED", timeout=8_000)
    expect(first).to_have_class(re.compile("tail-new"))
    expect(page.locator("#tail-status")).to_have_text(re.compile(r"Live tail on: 1 new event"))
    assert page.get_by_test_id("audit-table").locator("tbody tr").count() == before + 1
    screenshot(page, "search-live-tail", full_page=False)
    page.get_by_role("button", name="Stop live tail").click()
    expect(page.locator("#tail-status")).to_have_text("Live tail off.")
