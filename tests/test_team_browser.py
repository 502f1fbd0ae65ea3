"""Invitations end to end in Chromium against real processes: the owner invites by email on the Members page (on a
phone), the email (written by the worker) carries the link, the invited person makes an account from it and lands in
the workspace; an existing user invited to a second workspace accepts and switches between the two."""
import re

from playwright.sync_api import expect

from . import live
from .live import PHONE, TIMEOUT_MS, assert_fits_phone, log_in, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)
LINK = r"https?://\S+/invitations/[^/\s]+/"


def _path(link):
    return link[link.index("/invitations/"):]


def test_an_invitation_from_email_link_to_account_to_workspace_switch(named, live_system, launch_chromium):
    browser = launch_chromium()

    # --- alice, the owner, invites dora as an agent from her phone ----------------------------------------------
    owner = new_page(browser, live_system, viewport=PHONE)
    log_in(owner, named.alice.email)
    expect(owner.get_by_test_id("dashboard-title")).to_have_text("Acme")
    owner.goto("/members/")
    expect(owner.get_by_role("heading", name="Members", exact=True)).to_be_visible()
    owner.get_by_label("Email address").fill("dora@example.com")
    owner.get_by_label("Role", exact=True).select_option("agent")
    owner.get_by_role("button", name="Send invitation").click()
    expect(owner.locator(".messages")).to_contain_text("Invitation sent to dora@example.com")
    expect(owner.get_by_test_id("invitation-dora@example.com")).to_contain_text("as agent")
    assert_fits_phone(owner, "the members page")

    # --- dora opens the emailed link, makes her account and is in Acme -------------------------------------------
    message = live_system.mailbox.wait_for(to="dora@example.com", subject_contains="Join Acme")
    link = live_system.mailbox.link(message, LINK)
    invited = new_page(browser, live_system)
    invited.goto(_path(link))
    expect(invited.get_by_role("heading", name="Join Acme")).to_be_visible()
    invited.get_by_label("Your name").fill("Dora Agent")
    invited.get_by_label("Password", exact=True).fill(live.PASSWORD)
    invited.get_by_test_id("create-and-join").click()
    expect(invited.get_by_test_id("dashboard-title")).to_have_text("Acme")
    expect(invited.locator(".messages")).to_contain_text("You are agent here")
    invited.get_by_test_id("nav-members").click()
    expect(invited.get_by_test_id("member-dora@example.com")).to_contain_text("Agent")
    expect(invited.get_by_role("button", name="Send invitation")).to_have_count(0)  # agents do not invite

    # --- Globex invites dora too; logged in, she accepts and switches between the two ----------------------------
    globex = new_page(browser, live_system)
    log_in(globex, named.carol.email)
    expect(globex.get_by_test_id("dashboard-title")).to_have_text("Globex")
    globex.goto("/members/")
    globex.get_by_label("Email address").fill("dora@example.com")
    globex.get_by_label("Role", exact=True).select_option("viewer")
    globex.get_by_role("button", name="Send invitation").click()
    expect(globex.locator(".messages")).to_contain_text("Invitation sent")
    message = live_system.mailbox.wait_for(to="dora@example.com", subject_contains="Join Globex")
    invited.goto(_path(live_system.mailbox.link(message, LINK)))
    invited.get_by_test_id("accept").click()
    expect(invited.get_by_test_id("dashboard-title")).to_have_text("Globex")
    invited.locator("details.switcher summary").click()
    invited.locator("details.switcher").get_by_role("button", name="Acme").click()
    expect(invited.get_by_test_id("dashboard-title")).to_have_text("Acme")

    # --- the owner sees her joined (and the invitation gone from the waiting list) -------------------------------
    owner.goto("/members/")
    expect(owner.get_by_test_id("member-dora@example.com")).to_be_visible()
    expect(owner.get_by_test_id("invitation-dora@example.com")).to_have_count(0)
    assert re.search(r"3 of 3 seats used", owner.get_by_test_id("seats").inner_text())
