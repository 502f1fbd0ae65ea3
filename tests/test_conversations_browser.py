"""Messages in a real browser against real processes: daphne, a Celery worker and a `whatsapp` worker hosting
sessions on the simulator (which sends delivered and read receipts by itself, 1 s and 3 s after a send).

The owner creates an API key on its page and links a number by the simulated scan. A contact writes in (through
the test-helper API): the conversation appears on the open list with its unread badge. In the conversation, a
message sent by an HTTP client with the key appears and turns delivered, then read; a test send from the page
and another inbound message appear too — all without a reload, on a 390 px phone. Then the shared inbox (take it,
a canned reply while the contact's phone shows "typing…", a note, close it), and the receptionist: outside business
hours a new contact's message gets the away message live in the inbox, the contact's typing shows on the page (the
number's show_contact_typing), an agent takes it, answers with a canned reply and closes it.
"""
import json
import re
import time
import urllib.request
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

import pytest
from playwright.sync_api import expect

from . import live
from .live import PHONE, TIMEOUT_MS, assert_fits_phone, log_in, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)
SCREENSHOTS = Path("/tmp")
CONTACT = "+6281234567890"


@pytest.fixture
def live_whatsapp():
    return {"qr_seconds": 3, "max_qr_attempts": 40}


def api(live_system, key, method, path, body=None):
    request = urllib.request.Request(f"{live_system.url}/api/v1/{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read() or b"null")


def test_messages_appear_and_move_to_delivered_and_read_live(named, live_system, launch_chromium):
    browser = launch_chromium()
    owner = new_page(browser, live_system, viewport=PHONE)
    log_in(owner, named.alice.email)
    expect(owner.get_by_test_id("dashboard-title")).to_be_visible()

    # --- an API key, shown once ------------------------------------------------------------------------------
    owner.goto("/dashboard/api-keys/")
    owner.get_by_label("New key name").fill("Browser test")
    owner.get_by_role("button", name="Create key").click()
    key = owner.get_by_label("New API key").input_value()
    assert key

    # --- a number linked by the simulated scan -----------------------------------------------------------------
    owner.goto("/sessions/")
    owner.get_by_label("Label").fill("Front desk")
    owner.get_by_role("button", name="Add session").click()
    expect(owner.get_by_test_id("session-title")).to_have_text("Front desk")
    owner.get_by_test_id("start").click()
    expect(owner.get_by_test_id("status-display")).to_have_text("Waiting for scan")
    scan = owner.get_by_test_id("simulate-scan")
    scan.get_by_label("Phone number").fill("+14155550123")
    scan.get_by_role("button", name="Simulate scan").click()
    expect(owner.get_by_test_id("status-display")).to_have_text("Connected")

    # --- a contact writes in while the list is open --------------------------------------------------------------
    owner.goto("/conversations/")
    expect(owner.locator("[data-live-state]")).to_have_text("Live")
    expect(owner.get_by_test_id("conversations-front-desk")).to_contain_text("No conversations yet")
    owner.evaluate("window.__sameDocument = true")
    status, _ = api(live_system, key, "POST", "test-helpers/sessions/front-desk/inbound",
                    {"from": CONTACT, "text": "Hi, is the shop open today?"})
    assert status == 202
    row = owner.locator(".conv-row").first
    expect(row).to_contain_text("Hi, is the shop open today?")
    expect(row).to_contain_text(CONTACT)
    expect(row.locator("[data-field=unread]")).to_have_text("1")
    expect(owner.get_by_test_id("tab-all-count")).to_have_text("(1)")  # the tabs' figures follow live
    expect(owner.get_by_test_id("tab-all-unread")).to_have_text("1")
    assert owner.evaluate("window.__sameDocument === true"), "the list was reloaded"
    owner.screenshot(path=str(SCREENSHOTS / "conversations-list-390.png"), full_page=True)
    assert_fits_phone(owner, "the conversation list")

    # --- in the conversation: a message sent with the API key goes delivered, then read --------------------------
    row.locator("a").click()
    expect(owner.get_by_test_id("conversation-title")).to_have_text(CONTACT)
    expect(owner.get_by_test_id("messages")).to_contain_text("Hi, is the shop open today?")
    expect(owner.locator("[data-live-state]")).to_have_text("Live")
    owner.evaluate("window.__sameDocument = true")

    status, sent = api(live_system, key, "POST", "messages", {"session": "front-desk", "to": CONTACT,
                                                               "type": "text", "text": "Yes, until 6 pm."})
    assert status == 202 and sent["data"]["status"] == "queued"
    bubble = owner.get_by_test_id(f"message-{sent['data']['id']}")
    expect(bubble).to_contain_text("Yes, until 6 pm.")
    expect(bubble).to_have_attribute("data-status", "read")
    expect(bubble.locator("[data-tick]")).to_have_text("✓✓ Read")
    history = bubble.get_attribute("data-status-history").split()
    assert "delivered" in history and history.index("delivered") < history.index("read"), history
    assert owner.evaluate("window.__sameDocument === true"), "the conversation page was reloaded"

    # --- a test send from the page, and another inbound message, live ----------------------------------------------
    owner.get_by_role("textbox", name=re.compile("^Reply")).fill("Sent from the dashboard")
    owner.get_by_test_id("send").click()
    mine = owner.locator(".conv-out", has_text="Sent from the dashboard")
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-status", re.compile("sent|delivered|read"))
    api(live_system, key, "POST", "test-helpers/sessions/front-desk/inbound",
        {"from": CONTACT, "text": "Great, see you!"})
    expect(owner.locator(".conv-in", has_text="Great, see you!")).to_have_count(1)
    assert owner.evaluate("window.__sameDocument === true"), "the conversation page was reloaded"
    owner.screenshot(path=str(SCREENSHOTS / "conversation-390.png"), full_page=True)
    assert_fits_phone(owner, "the conversation")

    # --- the API agrees, and the page reset the unread count ----------------------------------------------------
    _, listed = api(live_system, key, "GET", "conversations")
    (conversation,) = listed["data"]
    assert conversation["last_message_preview"] == "Great, see you!"
    _, messages = api(live_system, key, "GET", f"conversations/{conversation['id']}/messages")
    assert [m["text"] for m in messages["data"]][:2] == ["Great, see you!", "Sent from the dashboard"]
    assert next(m for m in messages["data"] if m["id"] == sent["data"]["id"])["status"] == "read"
    # The open page said so (a POST, not its GET) as each inbound message arrived while it was shown: none unread.
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while conversation["unread_count"] and time.monotonic() < deadline:
        time.sleep(0.1)
        (conversation,) = api(live_system, key, "GET", "conversations")[1]["data"]
    assert conversation["unread_count"] == 0
    owner.goto("/conversations/")
    expect(owner.get_by_test_id(f"unread-{conversation['id']}")).to_have_text("0")
    expect(owner.get_by_test_id(f"unread-{conversation['id']}")).to_be_hidden()

    # --- the shared inbox: take it, answer with a canned reply, leave a note, close it ------------------------------
    status, _ = api(live_system, key, "POST", "canned-replies", {"code": "price", "text": "Plans start at $9."})
    assert status == 201
    owner.goto(f"/conversations/{conversation['id']}/")
    owner.get_by_test_id("assign-me").click()
    expect(owner.get_by_test_id("conversation-assignee")).to_contain_text("Assigned to")
    owner.locator(".conv-in", has_text="Great, see you!").get_by_role("button", name="Reply to this message").click()
    expect(owner.get_by_test_id("replying")).to_contain_text("Great, see you!")
    composer = owner.get_by_role("textbox", name=re.compile("^Reply"))
    composer.fill("")
    composer.press_sequentially("/pri")
    # While the owner types, the contact's (simulated) phone shows "typing…".
    chat = CONTACT.lstrip("+") + "@s.whatsapp.net"
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    seen = []
    while not any(entry["chat"] == chat and entry["typing"] for entry in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = api(live_system, key, "GET", "test-helpers/sessions/front-desk/chat-presence")[1]["data"]
    assert any(entry["chat"] == chat and entry["typing"] for entry in seen), seen
    owner.get_by_test_id("canned-option-price").click()
    expect(composer).to_have_value("Plans start at $9.")
    owner.get_by_test_id("send").click()
    expect(owner.locator(".conv-out", has_text="Plans start at $9.")).to_have_count(1)
    owner.get_by_label("Add a note for the team").fill("Quoted the basic plan.")
    owner.get_by_test_id("note-add").click()
    expect(owner.get_by_test_id("notes")).to_contain_text("Quoted the basic plan.")
    owner.get_by_test_id("status-closed").click()
    expect(owner.get_by_test_id("conversation-status")).to_have_text("Closed")
    assert_fits_phone(owner, "the conversation with its inbox controls")
    _, messages = api(live_system, key, "GET", f"conversations/{conversation['id']}/messages")
    assert not any("Quoted the basic plan." in (m["text"] or "") for m in messages["data"])
    answer = next(m for m in messages["data"] if m["text"] == "Plans start at $9.")
    assert answer["reply_to"], answer  # quoting "Great, see you!"
    owner.goto("/conversations/?assigned=mine&status=open")
    expect(owner.get_by_test_id(f"conversation-row-{conversation['id']}")).to_have_count(0)
    owner.goto("/conversations/?assigned=mine&status=closed")
    expect(owner.get_by_test_id(f"status-{conversation['id']}")).to_have_text("Closed")
    assert_fits_phone(owner, "the inbox filtered")

    # --- the receptionist: outside business hours a new contact gets the away message, live in the inbox ----------
    today = datetime.now(dt_timezone.utc).weekday()
    closed_now = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today + 3) % 7]  # open another day only
    status, _ = api(live_system, key, "PATCH", "automation", {
        "enabled": True, "schedule": [{"day": closed_now, "start": "09:00", "end": "17:00"}],
        "away_message": "We're closed now; we answer from 9 am."})
    assert status == 200
    # The number shows its contacts' typing (and so appears online): the conversation page says "typing…".
    status, _ = api(live_system, key, "PATCH", "sessions/front-desk", {"show_contact_typing": True})
    assert status == 200
    owner.goto("/conversations/")
    expect(owner.locator("[data-live-state]")).to_have_text("Live")
    owner.evaluate("window.__sameDocument = true")
    late = "+6281234567899"
    api(live_system, key, "POST", "test-helpers/sessions/front-desk/inbound", {"from": late, "text": "Hello? Anyone?"})
    late_row = owner.locator(".conv-row", has_text=late)
    expect(late_row).to_contain_text("We're closed now; we answer from 9 am.")  # the away message went out
    assert owner.evaluate("window.__sameDocument === true"), "the list was reloaded"
    late_row.locator("a").click()
    expect(owner.locator(".conv-in", has_text="Hello? Anyone?")).to_have_count(1)
    expect(owner.locator(".conv-out", has_text="We're closed now; we answer from 9 am.")).to_have_count(1)
    expect(owner.locator("[data-live-state]")).to_have_text("Live")
    typing = owner.get_by_test_id("contact-typing")
    expect(typing).to_be_hidden()
    api(live_system, key, "POST", "test-helpers/sessions/front-desk/contact-typing", {"from": late,
                                                                                        "state": "composing"})
    expect(typing).to_be_visible()
    expect(typing).to_have_text("typing…")
    api(live_system, key, "POST", "test-helpers/sessions/front-desk/inbound", {"from": late, "text": "Prices?"})
    expect(owner.locator(".conv-in", has_text="Prices?")).to_have_count(1)
    expect(typing).to_be_hidden()  # their message came: no longer typing

    # An agent takes it, types (the contact's phone shows "typing…"), answers with a canned reply, closes it.
    owner.get_by_test_id("assign-me").click()
    expect(owner.get_by_test_id("conversation-assignee")).to_contain_text("Assigned to")
    composer = owner.get_by_role("textbox", name=re.compile("^Reply"))
    composer.press_sequentially("/pri")
    late_chat = late.lstrip("+") + "@s.whatsapp.net"
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    seen = []
    while not any(e["chat"] == late_chat and e["typing"] for e in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = api(live_system, key, "GET", "test-helpers/sessions/front-desk/chat-presence")[1]["data"]
    assert any(e["chat"] == late_chat and e["typing"] for e in seen), seen
    owner.get_by_test_id("canned-option-price").click()
    owner.get_by_test_id("send").click()
    expect(owner.locator(".conv-out", has_text="Plans start at $9.")).to_have_count(1)
    owner.get_by_test_id("status-closed").click()
    expect(owner.get_by_test_id("conversation-status")).to_have_text("Closed")
    assert_fits_phone(owner, "the conversation the receptionist answered")
