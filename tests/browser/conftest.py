"""Browser-test fixtures: Debian's Chromium driven by Playwright, against ``live_app`` (tests/live_server.py).

``page`` is a fresh
browser context (no cookies) per test whose relative URLs go to that server: ``page.goto("/auth/login")``.
No browser is ever downloaded: Playwright drives /usr/bin/chromium.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import SCREENSHOT_DIR
from tests.live_server import Account

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: Without the background-networking flags Chromium keeps trying hosts it cannot reach from here.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 900}
STARTUP_TIMEOUT_S = 30


def _ensure_chromium() -> None:
    """Skip when Chromium is missing and cannot be installed here; as root, install it (once per machine)."""
    if os.access(CHROMIUM, os.X_OK):
        return
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and installing it needs root: "
                    "run 'sudo apt-get install -y chromium' (or scripts/install-browser.sh as root)")
    with open(Path(tempfile.gettempdir()) / "audit_portal-install-browser.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test workers: one apt-get at a time
        if not os.access(CHROMIUM, os.X_OK):
            result = subprocess.run([ROOT / "scripts" / "install-browser.sh"], capture_output=True, text=True)
            if result.returncode != 0 or not os.access(CHROMIUM, os.X_OK):
                pytest.fail(f"scripts/install-browser.sh could not install {CHROMIUM}:\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def browser():
    _ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, live_app):
    """Open a page in a new browser context (its own cookies, as another person would have)."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_app.url, viewport=VIEWPORT)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` saves a full-page PNG as SCREENSHOT_DIR/name.png and returns its path
    (``full_page=False``: only what the window shows, for long pages)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def page(new_page, screenshot, request):
    """A page in a fresh context; if the test fails, what it showed last is saved as FAILED-<test>.png
    (removed again when the test passes)."""
    page = new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        screenshot(page, f"FAILED-{request.node.name}")
    else:
        (SCREENSHOT_DIR / f"FAILED-{request.node.name}.png").unlink(missing_ok=True)


@pytest.fixture
def log_in():
    """``log_in(page, account)`` submits the login form (opening it first unless ``open_form=False``)."""

    def submit(page, account: Account, open_form: bool = True) -> None:
        if open_form:
            page.goto("/auth/login")
        page.get_by_label("Username").fill(account.username)
        page.get_by_label("Password").fill(account.password)
        page.get_by_role("button", name="Log in").click()

    return submit
