"""The audit log pages in a real browser: filtering, paging, badges, detail, error dashboard, CSV export."""

from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import Page, expect

from audit_portal.audit.read.export import CSV_COLUMNS

pytestmark = pytest.mark.browser

PAGE_INFO_RE = re.compile(r"^(\d[\d,]*)–(\d[\d,]*) of (\d[\d,]*) events")
RED = "rgb(220, 53, 69)"
GREEN = "rgb(25, 135, 84)"


@pytest.fixture(scope="module")
def seeded(live_app):
    """500 demo events (every action type, status and severity) in the live app's database."""
    live_app.flask("demo", "seed", "--count", "500")
    return live_app


def page_info(page: Page) -> tuple[int, int, int]:
    """(first, last, total) from the pager's "1–50 of 512 events" text."""
    text = page.get_by_test_id("page-info").inner_text()
    match = PAGE_INFO_RE.match(text)
    assert match, text
    return tuple(int(n.replace(",", "")) for n in match.groups())


def rows(page: Page):
    return page.get_by_test_id("audit-table").locator("tbody tr")


def column(page: Page, label: str) -> list[str]:
    return [t.strip() for t in rows(page).locator(f'td[data-label="{label}"]').all_inner_texts()]


def apply_filters(page: Page, **selects: str) -> None:
    for label, value in selects.items():
        page.get_by_label(label, exact=True).select_option(value)
    page.get_by_role("button", name="Apply filters").click()


def test_admin_filters_pages_and_exports_the_log(page, seeded, log_in, screenshot, tmp_path):
    log_in(page, seeded.admin)
    expect(page).to_have_url(re.compile(r"/admin/audit-logs/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    _, last, everything = page_info(page)
    assert last == 50 and everything >= 500

    # Filter with the filter bar: only authentication events, the URL says so, and a chip shows it.
    apply_filters(page, Category="authentication")
    expect(page).to_have_url(re.compile(r"category=authentication"))
    expect(page.get_by_test_id("active-filters")).to_contain_text("Category: authentication")
    assert set(column(page, "Category")) == {"authentication"}
    _, _, authentication = page_info(page)
    assert 0 < authentication < everything
    success = rows(page).locator('.badge-status[data-status="SUCCESS"]').first
    expect(success).to_have_text("SUCCESS")
    assert success.evaluate("e => getComputedStyle(e).backgroundColor") == GREEN
    screenshot(page, "audit-viewer", full_page=False)

    # 25 a page; page forward and back, the filter survives.
    apply_filters(page, **{"Per page": "25"})
    assert page_info(page) == (1, 25, authentication) and authentication > 25  # ~145 of 500 demo events
    top = rows(page).first.get_attribute("data-id")
    page.get_by_role("link", name="Next ›").click()
    expect(page.get_by_test_id("page-info")).to_contain_text(f"26–{min(50, authentication)} of {authentication} events")
    expect(page).to_have_url(re.compile(r"category=authentication.*skip=25"))
    assert set(column(page, "Category")) == {"authentication"}
    assert rows(page).first.get_attribute("data-id") != top
    page.get_by_role("link", name="‹ Previous").click()
    expect(page.get_by_test_id("page-info")).to_contain_text(f"1–25 of {authentication} events")
    assert rows(page).first.get_attribute("data-id") == top

    # Narrow further to failures: every badge is a red FAILURE badge.
    apply_filters(page, Status="FAILURE")
    expect(page.get_by_test_id("active-filters")).to_contain_text("Status: FAILURE")
    first, last, failures = page_info(page)
    assert (first, last) == (1, min(25, failures)) and 0 < failures < authentication
    assert set(column(page, "Action")) <= {"LOGIN_FAILED", "LOGIN_THROTTLED"}
    assert set(column(page, "Status")) == {"FAILURE"}
    badge = rows(page).first.locator(".badge-status")
    expect(badge).to_have_text("FAILURE")
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == RED

    # The search box submits with the keyboard.
    page.get_by_label("Search description").fill("no such event at all")
    page.get_by_label("Search description").press("Enter")
    expect(page.get_by_test_id("empty")).to_contain_text("No events match these filters")
    page.get_by_test_id("active-filters").get_by_role("link", name=re.compile("Remove filter Search")).click()
    expect(page.get_by_test_id("page-info")).to_contain_text(f"of {failures} events")

    # Export CSV: a download of exactly the filtered set.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert re.fullmatch(r"audit-logs_start_\d{8}T\d{6}Z\.csv", download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with open(path, newline="", encoding="utf-8") as f:
        header, *records = list(csv.reader(f))
    assert header == list(CSV_COLUMNS)
    assert len(records) == failures
    exported = [dict(zip(header, record, strict=True)) for record in records]
    assert {(r["category"], r["status"]) for r in exported} == {("authentication", "FAILURE")}


def test_admin_reads_an_error_from_the_dashboard_to_its_stack_trace(page, seeded, log_in, screenshot):
    log_in(page, seeded.admin)
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Errors").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Errors")

    chart = page.get_by_test_id("error-chart")
    expect(chart.locator("svg[role=img] rect").first).to_be_visible()
    total = int(chart.get_attribute("data-total"))
    drawn = chart.locator("svg[role=img] rect").evaluate_all("rs => rs.map(r => +r.dataset.count)")
    assert total > 0 and sum(drawn) == total
    groups = page.get_by_test_id("error-groups").locator("tbody tr")
    counts = [int(c.replace(",", "")) for c in groups.locator('[data-testid="group-count"]').all_inner_texts()]
    assert len(counts) >= 5 and sum(counts) == total  # the seed has 7 kinds of error over 30 days
    screenshot(page, "audit-errors", full_page=False)

    # Only CRITICAL errors: every group's badge says so, in red.
    apply_filters(page, Severity="CRITICAL")
    badges = page.get_by_test_id("error-groups").locator(".badge-severity")
    expect(badges.first).to_have_text(re.compile(r"CRITICAL$"))
    assert set(badges.evaluate_all("bs => bs.map(b => b.textContent.trim())")) == {"Severity CRITICAL"}
    assert badges.first.evaluate("e => getComputedStyle(e).backgroundColor") == RED

    # A group opens its occurrences; an occurrence opens its detail with the stack trace.
    first_group = page.get_by_test_id("error-groups").locator("tbody tr").first
    error_type = first_group.locator('td[data-label="Error"] a').inner_text()
    occurrences = int(first_group.get_by_test_id("group-count").inner_text().replace(",", ""))
    first_group.locator('td[data-label="Error"] a').click()
    expect(page.get_by_role("heading", level=1)).to_have_text(error_type)
    expect(page.get_by_test_id("group-stats")).to_contain_text(f"{occurrences} occurrence")
    assert len(rows(page).all()) == min(occurrences, 50)
    assert set(column(page, "Status")) == {"ERROR"}
    event_id = rows(page).first.get_attribute("data-id")
    rows(page).first.locator('td[data-label="Time (UTC)"] a').click()

    expect(page.get_by_role("heading", level=1)).to_contain_text(error_type)
    expect(page.get_by_test_id("stack-trace")).to_contain_text("Traceback (most recent call last)")
    expect(page.get_by_test_id("event-fields")).to_contain_text(error_type)
    expect(page.get_by_test_id("error-group")).to_have_text(f"{occurrences} occurrences of this error")
    screenshot(page, "audit-detail", full_page=False)
    expect(page).to_have_url(re.compile(rf"/admin/audit-logs/{event_id}$"))
    page.get_by_test_id("same-request").click()  # the viewer, filtered to this event's request
    expect(page.get_by_test_id("active-filters")).to_contain_text("Request:")
    assert [r.get_attribute("data-id") for r in rows(page).all()] == [event_id]  # demo requests made one event


def test_narrow_screen_folds_the_filters_and_stacks_the_rows(new_page, seeded, log_in):
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, seeded.admin)
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    form = page.get_by_role("search", name="Filter events")
    expect(form).to_be_hidden()
    page.get_by_role("button", name="Filters").click()
    expect(form).to_be_visible()
    expect(page.get_by_label("Status", exact=True)).to_be_visible()
    # No horizontal scrolling: each row is a card as wide as the screen, with the status in it.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = rows(page).first.locator(".badge-status").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
