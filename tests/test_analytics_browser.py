"""The Analytics page in a real browser against real processes: its charts are drawn (uPlot), a message sent by API
moves the figures without a reload (the page's socket), and nothing overflows at 390 px.

alice owns Acme (Basic plan, analytics included).
"""
import json
import urllib.request
from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from . import live
from .live import PHONE, TIMEOUT_MS, assert_fits_phone, log_in, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)


def send_by_api(live_system, key, text):
    body = json.dumps({"session": "front-desk", "to": "+6281234567890", "text": text}).encode()
    request = urllib.request.Request(f"{live_system.url}/api/v1/messages", data=body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def test_the_analytics_page_draws_its_charts_and_follows_a_message_sent_by_api(named, live_system, launch_chromium):
    from accounts.actions import create_api_key
    from whatsapp.models import WhatsAppSession

    with tenant_context(named.acme):
        now = timezone.now()
        WhatsAppSession.objects.create(name="front-desk", phone="+14155550100", should_run=False,
                                       status=WhatsAppSession.Status.CONNECTED, connected_at=now, linked_at=now)
    _, key = create_api_key(user=named.alice, tenant=named.acme, name="browser")
    send_by_api(live_system, key, "first")

    browser = launch_chromium()
    page = new_page(browser, live_system, viewport=PHONE)
    log_in(page, named.alice.email)
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.locator("label[for=nav-toggle]").click()
    page.get_by_test_id("nav-analytics").click()
    expect(page.get_by_role("heading", name="Analytics", exact=True)).to_be_visible()
    sent = page.locator("[data-figure='message_stats.today.sent']")
    expect(sent).to_have_text("1")
    expect(page.locator("#per-day-chart canvas")).to_have_count(1)  # uPlot drew the chart
    expect(page.locator("[data-table='heatmap'] tbody tr")).to_have_count(7)
    expect(page.get_by_role("link", name="Download CSV")).to_have_count(4)
    accepted = page.locator("[data-table='latency'] [data-figure='message_stats.latency.accept_to_sent.count']")
    expect(accepted).to_have_text("0")  # the number is not running here: nothing has left yet
    page.evaluate("window.__sameDocument = true")
    assert_fits_phone(page, "the analytics page")

    send_by_api(live_system, key, "second")
    expect(sent).to_have_text("2")  # over the socket, no reload
    expect(page.locator("[data-table='trend'] tbody tr").last).to_contain_text("2")
    def taken_by_whatsapp():  # both, 3 s after they were accepted
        from django.db.models import F

        from whatsapp.models import Message
        with tenant_context(named.acme):
            Message.objects.update(status="sent", sent_at=F("created_at") + timedelta(seconds=3))

    live.outside_event_loop(taken_by_whatsapp)
    expect(accepted).to_have_text("2")  # the latency table follows too
    expect(page.locator("[data-table='latency'] [data-figure='message_stats.latency.accept_to_sent.p50_seconds']")
           ).to_have_text("3.0")
    assert page.evaluate("window.__sameDocument") is True
    assert_fits_phone(page, "the analytics page after an update")
