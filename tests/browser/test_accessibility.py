"""Accessible pages in a real browser: axe-core finds no serious or critical violation of WCAG 2.1 A/AA or of
its best practices on the viewer, an event's detail, the error dashboard and the saved views page, and the
viewer can be used with the keyboard alone.

axe-core is vendored for these tests only (tests/browser/vendor/axe-core/, refreshed by
scripts/vendor-assets.sh). It is evaluated in the page rather than added as a script tag: the page's CSP
(script-src 'self') blocks inline scripts, and evaluation keeps that CSP in force for the page under test.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import VIEWPORT

pytestmark = pytest.mark.browser

AXE_DIR = Path(__file__).parent / "vendor" / "axe-core"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
#: Runs axe on the whole document; answers the serious and critical violations, each with its nodes' selectors.
RUN_AXE = """async (tags) => {
  const results = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return results.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
    id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
    nodes: v.nodes.map(n => n.target.join(' ') + (n.failureSummary ? ': ' + n.failureSummary.replace(/\\s+/g, ' ') : ''))}));
}"""
#: More Tab presses than any of these pages has stops before the element sought: beyond that, it is unreachable.
MAX_TABS = 80


@pytest.fixture(scope="module")
def axe_source() -> str:
    """The vendored axe.min.js, checked against the SHA-256 in its VERSIONS file."""
    version, checksum = (AXE_DIR / "VERSIONS").read_text().splitlines()[:2]
    source = (AXE_DIR / "axe.min.js").read_bytes()
    assert hashlib.sha256(source).hexdigest() == checksum.split()[0], \
        f"{AXE_DIR}/axe.min.js is not the {version} that VERSIONS names: run scripts/vendor-assets.sh"
    return source.decode()


@pytest.fixture(scope="module")
def seeded(live_app):
    """300 demo events over 30 days, errors with stack traces among them."""
    live_app.flask("demo", "seed", "--count", "300")
    return live_app


@pytest.fixture(scope="module")
def admin_cookies(browser, seeded) -> list:
    """The admin's session cookies: logged in once for the module, not once a test."""
    context = browser.new_context(base_url=seeded.url, viewport=VIEWPORT)
    page = context.new_page()
    page.goto("/auth/login")
    page.get_by_label("Username").fill(seeded.admin.username)
    page.get_by_label("Password").fill(seeded.admin.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    cookies = context.cookies()
    context.close()
    return cookies


@pytest.fixture
def admin(page, admin_cookies) -> Page:
    """The page, logged in as the admin, asking for reduced motion: Bootstrap then drops its colour transitions,
    so axe measures contrast on settled colours, not halfway out of a hover."""
    page.context.add_cookies(admin_cookies)
    page.emulate_media(reduced_motion="reduce")
    return page


def assert_accessible(page: Page, axe_source: str, state: str) -> None:
    """Fail listing every serious or critical axe violation on the page as it is now: rule, help, nodes."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    violations = page.evaluate(RUN_AXE, AXE_TAGS)
    found = [f"[{v['impact']}] {v['id']}: {v['help']} ({v['url']})\n" + "\n".join(f"    {n}" for n in v["nodes"])
             for v in violations]
    assert not found, f"{state} ({page.url}) has {len(found)} serious or critical axe violation(s):\n" + "\n".join(found)


def tab_to(page: Page, selector: str, key: str = "Tab") -> int:
    """Press Tab (or Shift+Tab) until the element matching ``selector`` has the focus; answer how many presses."""
    for presses in range(1, MAX_TABS + 1):
        page.keyboard.press(key)
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return presses
    raise AssertionError(f"{key} never reached {selector} in {MAX_TABS} presses; focus stayed on "
                         + page.evaluate("document.activeElement?.outerHTML.slice(0, 200)"))


@pytest.mark.parametrize("query", ["", "?q=action:login"], ids=["all-events", "filtered"])
def test_viewer_has_no_serious_violations(admin, axe_source, query):
    admin.goto(f"/admin/audit-logs/{query}")
    expect(admin.get_by_test_id("audit-table").locator("tbody tr").first).to_be_visible()
    expect(admin.get_by_test_id("histogram-bucket").first).to_be_visible()
    if query:
        expect(admin.get_by_test_id("active-filters")).to_contain_text("action:login")
    assert_accessible(admin, axe_source, f"The viewer{' with a query' if query else ''}")


def test_viewer_with_nothing_to_show_has_no_serious_violations(admin, axe_source):
    admin.goto("/admin/audit-logs/?q=no-event-says-this")
    expect(admin.get_by_test_id("empty")).to_contain_text("No events match these filters")
    assert_accessible(admin, axe_source, "The viewer with no matching event")


def test_viewer_with_live_tail_on_and_histogram_table_open(admin, axe_source):
    admin.goto("/admin/audit-logs/")
    admin.get_by_test_id("tail-toggle").click()
    expect(admin.get_by_test_id("tail-toggle")).to_have_attribute("aria-pressed", "true")
    expect(admin.locator("#tail-status")).to_contain_text("Live tail on")
    assert_accessible(admin, axe_source, "The viewer with the live tail on")

    admin.get_by_test_id("tail-toggle").click()
    expect(admin.locator("#tail-status")).to_have_text("Live tail off.")
    table = admin.get_by_test_id("histogram-table")
    table.locator("summary").click()
    expect(table.get_by_role("table")).to_be_visible()
    assert_accessible(admin, axe_source, "The viewer with the histogram's table open")


def test_event_detail_has_no_serious_violations(admin, axe_source):
    admin.goto("/admin/audit-logs/errors")
    admin.get_by_test_id("error-groups").locator('td[data-label="Error"] a').first.click()
    admin.get_by_role("link", name="Latest occurrence, with its stack trace").click()
    expect(admin).to_have_url(re.compile(r"/admin/audit-logs/\d+$"))
    expect(admin.get_by_test_id("stack-trace")).to_contain_text("Traceback")
    expect(admin.get_by_test_id("event-fields")).to_be_visible()
    assert_accessible(admin, axe_source, "An error event's detail")


def test_error_dashboard_has_no_serious_violations(admin, axe_source):
    admin.goto("/admin/audit-logs/errors")
    expect(admin.get_by_test_id("error-chart").locator("svg rect").first).to_be_visible()
    expect(admin.get_by_test_id("error-groups").locator("tbody tr").first).to_be_visible()
    assert_accessible(admin, axe_source, "The error dashboard")

    # One group: its occurrences, and a chip for the group's fingerprint (a long value).
    admin.get_by_test_id("error-groups").locator('td[data-label="Error"] a').first.click()
    expect(admin.get_by_test_id("group-stats")).to_contain_text("occurrence")
    expect(admin.get_by_test_id("active-filters")).to_contain_text("Error group")
    assert_accessible(admin, axe_source, "An error group on the dashboard")


def test_saved_views_page_has_no_serious_violations(admin, axe_source):
    admin.goto("/admin/audit-logs/?q=action:login_failed")
    save = admin.get_by_test_id("save-view")
    save.locator("summary").click()
    save.get_by_label("Name").fill("Failed logins (accessibility)")
    assert_accessible(admin, axe_source, "The viewer with the 'Save this view' form open")
    admin.get_by_role("button", name="Save view").click()
    expect(admin.get_by_role("alert")).to_contain_text("saved")

    admin.goto("/admin/saved-views/")
    expect(admin.get_by_role("heading", level=1)).to_have_text("Saved views")
    expect(admin.get_by_test_id("saved-views")).to_contain_text("Failed logins (accessibility)")
    assert_accessible(admin, axe_source, "The saved views page")


def test_viewer_works_with_the_keyboard_alone(admin):
    admin.goto("/admin/audit-logs/")
    # The Query box: reached with Tab, typed into, submitted with Enter.
    tab_to(admin, "#f-q")
    admin.keyboard.type("action:login")
    admin.keyboard.press("Enter")
    expect(admin).to_have_url(re.compile(r"\?q=action%3Alogin"))
    expect(admin.get_by_test_id("active-filters")).to_contain_text("action:login")

    # A histogram bar: a link reached with Tab, with a focus ring a sighted keyboard user can see.
    tab_to(admin, "a.histogram-bucket")
    ring = admin.evaluate("""() => {
      const hit = getComputedStyle(document.activeElement.querySelector('.histogram-hit'));
      return {stroke: hit.stroke, width: hit.strokeWidth};
    }""")
    assert ring["stroke"] not in ("none", "") and ring["width"] not in ("0px", ""), ring

    # The live tail: a toggle button announcing its state, with a polite live region for its status.
    status = admin.locator("#tail-status")
    expect(status).to_have_attribute("aria-live", "polite")
    toggle = admin.get_by_test_id("tail-toggle")
    tab_to(admin, "#tail-toggle")
    admin.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(toggle).to_have_text("Stop live tail")
    expect(status).to_contain_text("Live tail on")
    admin.keyboard.press("Space")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(status).to_have_text("Live tail off.")

    # Back to the first bar with Shift+Tab; Enter narrows the viewer to its time range.
    tab_to(admin, "a.histogram-bucket", key="Shift+Tab")
    while admin.evaluate("document.activeElement.matches('a.histogram-bucket')"):
        admin.keyboard.press("Shift+Tab")
    admin.keyboard.press("Tab")
    bar = admin.evaluate("({start: document.activeElement.dataset.start, total: +document.activeElement.dataset.total})")
    admin.keyboard.press("Enter")
    expect(admin).to_have_url(re.compile(r"date_from=.*date_to="))
    expect(admin.get_by_test_id("active-filters")).to_contain_text("From:")
    expect(admin.get_by_test_id("histogram")).to_have_attribute("data-total", str(bar["total"]))
