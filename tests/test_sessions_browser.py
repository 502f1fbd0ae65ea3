"""Linking a WhatsApp number in a real browser against real processes: daphne, a Celery worker and a `whatsapp`
worker hosting sessions on the simulator (QR codes that rotate every few seconds here).

The owner creates "Front desk", starts it, watches the QR code appear and change, simulates the scan and sees
"Connected as +…" — all without a reload — while a member's session list follows along live.
"""
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from . import live
from .live import PHONE, TIMEOUT_MS, assert_fits_phone, log_in, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)
SCREENSHOTS = Path("/tmp")
QR_SECONDS = 3


@pytest.fixture
def live_whatsapp():
    # Codes rotate every 3 s, and enough of them that the pairing window (3 s × 40) outlasts the test.
    return {"qr_seconds": QR_SECONDS, "max_qr_attempts": 40}


def websocket_frames(page, path):
    frames = []

    def on_websocket(ws):
        if path in ws.url:
            ws.on("framereceived", lambda payload: frames.append(payload))

    page.on("websocket", on_websocket)
    return frames


def qr_loaded(page):
    return page.get_by_test_id("qr-image").evaluate("img => img.complete && img.naturalWidth > 0")


def test_owner_links_a_number_with_the_simulator_and_watches_it_live(named, live_system, launch_chromium):
    browser = launch_chromium()

    # --- a member watches the session list (desktop) -------------------------------------------------------
    member = new_page(browser, live_system)
    log_in(member, named.bob.email)
    expect(member.get_by_test_id("dashboard-title")).to_be_visible()
    member.get_by_test_id("nav-sessions").click()
    expect(member.get_by_role("heading", name="WhatsApp sessions")).to_be_visible()
    expect(member.get_by_test_id("no-sessions")).to_be_visible()
    expect(member.get_by_test_id("create-session")).to_have_count(0)

    # --- the owner, on a phone, creates "Front desk" -------------------------------------------------------
    owner = new_page(browser, live_system, viewport=PHONE)
    session_frames = websocket_frames(owner, "/ws/sessions/front-desk/")
    log_in(owner, named.alice.email)
    expect(owner.get_by_test_id("dashboard-title")).to_be_visible()
    owner.locator("label[for=nav-toggle]").click()
    owner.get_by_test_id("nav-sessions").click()
    expect(owner.get_by_test_id("simulator-banner")).to_contain_text("Simulated WhatsApp")
    owner.get_by_label("Label").fill("Front desk")
    owner.get_by_role("button", name="Add session").click()
    expect(owner.get_by_test_id("session-title")).to_have_text("Front desk")
    assert owner.url.endswith("/sessions/front-desk/")
    expect(owner.get_by_test_id("status-display")).to_have_text("Not linked")
    expect(owner.locator("[data-live-state]")).to_have_text("Live")
    # From here on the owner's page is never reloaded: this marker would vanish with a reload.
    owner.evaluate("window.__sameDocument = true")

    member.reload()  # the new row (a session created elsewhere only shows a "reload" notice)
    row = member.get_by_test_id("session-row-front-desk")
    expect(row).to_contain_text("Not linked")
    expect(member.locator("[data-live-state]")).to_have_text("Live")

    # --- starts it: a QR code appears, then changes by itself -----------------------------------------------
    owner.get_by_test_id("start").click()
    expect(owner.get_by_test_id("status-display")).to_have_text("Waiting for scan")
    expect(owner.get_by_test_id("status-detail")).to_contain_text("Scan the QR code with WhatsApp")
    qr = owner.get_by_test_id("qr-image")
    expect(qr).to_be_visible()
    expect(qr).to_have_attribute("data-qr-version", re.compile(r".+"))
    live.wait_until(lambda: qr_loaded(owner), timeout=10, message="the QR image to load")
    first_version, first_src = qr.get_attribute("data-qr-version"), qr.get_attribute("src")
    owner.screenshot(path=str(SCREENSHOTS / "session-qr-390.png"), full_page=True)
    assert_fits_phone(owner, "the session page with a QR code")
    expect(row).to_contain_text("Waiting for scan")  # the member's list, live

    expect(qr).not_to_have_attribute("data-qr-version", first_version, timeout=4 * QR_SECONDS * 1000)
    assert qr.get_attribute("src") != first_src
    live.wait_until(lambda: qr_loaded(owner), timeout=10, message="the new QR image to load")
    expect(owner.get_by_test_id("activity")).to_contain_text("QR code issued")

    # --- the simulated phone scans: connected, live --------------------------------------------------------
    scan = owner.get_by_test_id("simulate-scan")
    scan.get_by_label("Phone number").fill("+14155550123")
    scan.get_by_label("WhatsApp name").fill("Front Desk")
    scan.get_by_role("button", name="Simulate scan").click()
    expect(owner.get_by_test_id("status-display")).to_have_text("Connected")
    expect(owner.get_by_test_id("status-detail")).to_have_text("Connected as +14155550123 (Front Desk)")
    expect(owner.get_by_test_id("phone-line")).to_have_text("+14155550123 (Front Desk)")
    expect(owner.get_by_test_id("qr-box")).to_be_hidden()
    expect(owner.get_by_test_id("simulate-scan")).to_be_hidden()
    expect(owner.get_by_test_id("activity").locator("li").first).to_contain_text("Connected as +14155550123")
    expect(owner.get_by_test_id("restart")).to_be_visible()
    expect(owner.get_by_test_id("unlink")).to_be_visible()
    assert owner.evaluate("window.__sameDocument === true"), "the session page was reloaded"
    assert any('"connected"' in str(frame) for frame in session_frames), "connected did not come by websocket"
    owner.screenshot(path=str(SCREENSHOTS / "session-connected-390.png"), full_page=True)
    assert_fits_phone(owner, "the connected session page")

    # The member's list followed, without a reload.
    expect(row.locator("[data-field=status_display]")).to_have_text("Connected")
    expect(row).to_contain_text("+14155550123 (Front Desk)")
    expect(row.get_by_role("button", name="Restart")).to_have_count(0)  # bob is an agent: sessions are not his

    # --- the phone unlinked (after a confirmation), then linked again with a pairing code instead of a QR code -----
    owner.once("dialog", lambda dialog: dialog.accept())
    owner.get_by_test_id("unlink").click()
    expect(owner.get_by_test_id("status-display")).to_have_text("Logged out")
    expect(owner.get_by_test_id("next-step")).to_contain_text("Press Start and scan the new QR code")
    expect(row.locator("[data-field=status_display]")).to_have_text("Logged out")
    link = owner.get_by_test_id("link-phone")
    link.get_by_label("Phone number").fill("+1 415 555 0123")
    link.get_by_role("button", name="Get a pairing code").click()
    expect(owner.get_by_test_id("status-display")).to_have_text("Waiting for pairing code")
    expect(owner.get_by_test_id("pair-code")).to_have_text(re.compile(r"^[1-9A-Z]{4}-[1-9A-Z]{4}$"))
    expect(owner.get_by_test_id("next-step")).to_contain_text("Link with phone number instead")
    owner.screenshot(path=str(SCREENSHOTS / "session-pairing-code-390.png"), full_page=True)
    assert_fits_phone(owner, "the session page with a pairing code")
    scan.get_by_label("Phone number").fill("+14155550123")
    scan.get_by_role("button", name="Simulate scan").click()
    expect(owner.get_by_test_id("status-detail")).to_have_text("Connected as +14155550123 (Front Desk)")
    expect(owner.get_by_test_id("pair-code").locator("xpath=..")).to_be_hidden()
    assert owner.evaluate("window.__sameDocument === true"), "the session page was reloaded"

    # --- the list on a phone -------------------------------------------------------------------------------
    owner.goto("/sessions/")
    owner_row = owner.get_by_test_id("session-row-front-desk")
    expect(owner_row).to_contain_text("Connected")
    expect(owner_row).to_contain_text("+14155550123 (Front Desk)")
    owner.screenshot(path=str(SCREENSHOTS / "sessions-list-390.png"), full_page=True)
    assert_fits_phone(owner, "the session list")
