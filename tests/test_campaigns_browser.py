"""The campaign page in a real browser at 390 px against the live processes: the owner starts a draft from its dry
run, the figures move live over the websocket while the feeder queues recipients (no reload), and pause shows its
state; the page is no wider than the phone."""
from playwright.sync_api import expect

from . import live
from .live import PHONE, TIMEOUT_MS, log_in, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)


def test_live_progress_of_a_campaign_on_a_phone(live_system, launch_chromium, named):
    from django_tenants.utils import tenant_context
    from django.utils import timezone

    from whatsapp.campaigns import actions, feeder
    from whatsapp.models import AudienceContact, MessageTemplate, WhatsAppSession

    def setup():
        with tenant_context(named.acme):
            WhatsAppSession.objects.create(name="front-desk", status="connected", should_run=False,
                                           phone="+14155550100")
            AudienceContact.objects.bulk_create([AudienceContact(phone=f"+1415555{n:04d}", name=f"Guest {n}",
                                                                 tags=["fair"]) for n in range(101, 106)])
            template = MessageTemplate.objects.create(name="invite", body="Hi {{first_name}}!")
            return actions.create_campaign(named.acme, acting_user=named.alice, name="Fair", template=template.pk,
                                           audience={"tags": ["fair"]}, sessions=["front-desk"],
                                           min_gap_seconds=5, max_gap_seconds=5).pk

    campaign_id = live.outside_event_loop(setup)
    browser = launch_chromium()
    page = new_page(browser, live_system, viewport=PHONE)
    log_in(page, named.alice.email)
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.goto(f"/broadcasts/{campaign_id}/")
    expect(page.get_by_test_id("dry-run-count")).to_have_text("5")
    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("Running")
    expect(page.locator("[data-campaign-id][data-live]")).to_have_count(1)
    expect(page.get_by_test_id("count-pending")).to_have_text("5")
    page.evaluate("window.notReloaded = true")

    def feed(seconds):
        with tenant_context(named.acme):
            return feeder.feed_schema(named.acme, timezone.now() + timezone.timedelta(seconds=seconds))

    assert live.outside_event_loop(lambda: feed(0)) == 1
    expect(page.get_by_test_id("count-pending")).to_have_text("4")
    assert live.outside_event_loop(lambda: feed(10)) == 1
    expect(page.get_by_test_id("count-pending")).to_have_text("3")
    assert page.evaluate("window.notReloaded") is True  # followed over the socket
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_test_id("pause").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("Paused")
    expect(page.get_by_test_id("resume")).to_be_visible()
