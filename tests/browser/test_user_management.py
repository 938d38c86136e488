"""User management in a real browser: what an admin and a normal user see at each step."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.live_server import Account

pytestmark = pytest.mark.browser

NEW_PASSWORD = "an0ther-Long-secret"


def flash(page: Page):
    return page.get_by_role("alert")


def shown(page: Page, label: str):
    """The value next to ``label`` on a user's detail page."""
    return page.locator(f"xpath=//dl/dt[normalize-space()='{label}']/following-sibling::dd[1]")


def nav(page: Page):
    return page.get_by_role("navigation", name="Main navigation")


def test_admin_manages_a_user_from_creation_to_deletion(page, new_page, live_app, log_in, screenshot):
    log_in(page, live_app.admin)
    expect(page).to_have_url(re.compile(r"/admin/audit-logs/$"))
    nav(page).get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Users")
    page.get_by_role("link", name="New user").click()

    page.get_by_label("Username").fill("bob")
    page.get_by_label("Email").fill("bob@example.com")
    page.get_by_label("Full name").fill("Bob Builder")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat password").fill(NEW_PASSWORD + "x")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text("Passwords do not match.")).to_be_visible()
    expect(page.get_by_label("Username")).to_have_value("bob")
    screenshot(page, "users-create-invalid")
    page.get_by_label("Password", exact=True).fill(live_app.admin.password)
    page.get_by_label("Repeat password").fill(live_app.admin.password)
    page.get_by_role("button", name="Create user").click()

    expect(flash(page)).to_have_text("User bob created.")
    expect(page.get_by_role("heading", level=1)).to_have_text("bob")
    expect(shown(page, "Full name")).to_have_text("Bob Builder")
    expect(shown(page, "Email")).to_have_text("bob@example.com")
    expect(shown(page, "Role")).to_have_text("user")
    expect(shown(page, "Status")).to_have_text("active")
    expect(shown(page, "Active")).to_have_text("yes")
    expect(shown(page, "Last login")).to_have_text("never")
    screenshot(page, "users-detail")

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Email")).to_have_value("bob@example.com")
    page.get_by_label("Email").fill("robert@example.com")
    page.get_by_label("Full name").fill("Robert Builder")
    page.get_by_label("Role").select_option("admin")
    page.get_by_role("button", name="Save changes").click()
    expect(flash(page)).to_have_text("User bob saved.")
    expect(shown(page, "Email")).to_have_text("robert@example.com")
    expect(shown(page, "Full name")).to_have_text("Robert Builder")
    expect(shown(page, "Role")).to_have_text("admin")

    page.get_by_label("Status").select_option("suspended")
    page.get_by_role("button", name="Change status").click()
    expect(flash(page)).to_have_text("Status of bob is now suspended.")
    expect(shown(page, "Status")).to_have_text("suspended")

    page.get_by_role("button", name="Deactivate").click()
    expect(flash(page)).to_have_text("User bob deactivated.")
    expect(shown(page, "Active")).to_have_text("no")
    expect(page.get_by_role("heading", level=1)).to_contain_text("inactive")
    page.get_by_role("button", name="Activate").click()
    expect(flash(page)).to_have_text("User bob activated.")
    expect(shown(page, "Active")).to_have_text("yes")

    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Reset password").click()
    expect(flash(page)).to_have_text("Password of bob reset; their sessions have ended.")
    page.get_by_label("Status").select_option("active")
    page.get_by_role("button", name="Change status").click()
    expect(shown(page, "Status")).to_have_text("active")

    bob = new_page()  # bob, in a browser of his own, logs in with the password the admin set
    log_in(bob, Account("bob", NEW_PASSWORD))
    expect(nav(bob).get_by_test_id("current-user")).to_contain_text("bob")
    page.reload()
    expect(shown(page, "Last login")).not_to_have_text("never")

    page.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete user bob?")
    screenshot(page, "users-delete-confirm")
    page.get_by_role("button", name="Delete bob").click()
    expect(flash(page)).to_have_text("User bob deleted. Their audit events are kept.")
    expect(page).to_have_url(re.compile(r"/admin/users/$"))
    expect(page.get_by_role("link", name="bob", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="alice", exact=True)).to_be_visible()
    screenshot(page, "users-list")


def test_admin_changes_own_password_and_logs_out(page, live_app, log_in, screenshot):
    carol = live_app.create_user("carol", role="admin")
    log_in(page, carol)
    nav(page).get_by_role("link", name="Users").click()
    page.get_by_role("link", name="carol", exact=True).click()
    expect(page.get_by_text("This is your account: you cannot deactivate or delete it.")).to_be_visible()
    expect(page.get_by_role("button", name="Deactivate")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete…")).to_have_count(0)

    nav(page).get_by_role("link", name="Change password").click()

    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("The current password is wrong.")).to_be_visible()
    screenshot(page, "password-change-invalid")
    page.get_by_label("Current password").fill(carol.password)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(flash(page)).to_have_text("Your password has been changed. Other sessions have been logged out.")

    nav(page).get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    expect(flash(page)).to_have_text("You have been logged out.")
    expect(nav(page).get_by_role("button", name="Log out")).to_have_count(0)
    page.goto("/admin/users/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next="))

    log_in(page, carol)
    expect(flash(page)).to_have_text("Invalid username or password.")
    log_in(page, Account("carol", NEW_PASSWORD))
    expect(nav(page).get_by_test_id("current-user")).to_contain_text("carol")


def test_normal_user_gets_403_on_user_management(page, live_app, log_in, screenshot):
    page.goto("/admin/users/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next="))
    expect(flash(page)).to_have_text("Please log in to see that page.")
    screenshot(page, "login")

    with page.expect_response(lambda r: r.url.endswith("/admin/users/")) as users_page:
        log_in(page, live_app.user, open_form=False)
    assert users_page.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("403 · Forbidden")
    expect(nav(page).get_by_test_id("current-user")).to_contain_text("alice")
    expect(nav(page).get_by_role("link", name="Users")).to_have_count(0)
    screenshot(page, "forbidden")
