"""The alert pages in a real browser against real processes: an owner reaches Alerts from the menu on a phone,
chooses Telegram and kinds in the alert settings (POST -> redirect -> GET, with the CSRF token the form carries),
filters the history; the workspace's and the platform's alert pages have no serious accessibility violation and
fit a phone (axe-core, as tests/test_accessibility_browser.py checks the other pages).

alice owns Acme; admin is a platform admin.
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from . import live
from .live import PHONE, TIMEOUT_MS, assert_fits_phone, log_in, new_page
from .test_accessibility_browser import check_pages

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def telegram_bot(monkeypatch):
    """The live processes (started after this) have a Telegram bot, at an address where nothing listens."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://127.0.0.1:9")


def test_an_owner_chooses_where_alerts_go_and_reads_the_history(telegram_bot, named, live_system, launch_chromium):
    from alerts.models import Alert, AlertSettings

    now = timezone.now()
    Alert.objects.create(key=f"session_down:{named.acme.pk}:1", rule="session_down", tenant=named.acme,
                         summary="Session front-desk is logged out for more than 10 minutes",
                         started_at=now - timedelta(minutes=20))
    Alert.objects.create(key=f"webhooks_dead:{named.acme.pk}", rule="webhooks_dead", tenant=named.acme,
                         state="resolved", summary="3 webhook deliveries of the last hour were dead-lettered",
                         started_at=now - timedelta(hours=3), resolved_at=now - timedelta(hours=2),
                         notifications=[{"at": now.isoformat(), "event": "firing", "channel": "email",
                                         "to": "workspace", "ok": True, "error": ""}])
    Alert.objects.create(key="queue_age", rule="queue_age", summary="A message has waited 12 minutes to be sent")

    browser = launch_chromium()
    page = new_page(browser, live_system, viewport=PHONE)
    log_in(page, named.alice.email)
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.locator("label[for=nav-toggle]").click()
    page.get_by_test_id("nav-workspace-alerts").click()
    expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    rows = page.get_by_test_id("alerts").locator("tbody tr")
    expect(rows).to_have_count(2)  # Acme's two, not the platform's own
    page.get_by_label("State").select_option("firing")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("front-desk is logged out")
    assert_fits_phone(page, "the alert history")

    page.get_by_test_id("alert-settings-link").click()
    expect(page.get_by_role("heading", name="Alert settings")).to_be_visible()
    page.get_by_label("Telegram chats").check()
    page.get_by_label("Telegram chat ids").fill("-1001234567890")
    page.get_by_label("A broadcast paused itself (safety stop)").uncheck()
    assert_fits_phone(page, "the alert settings")
    page.get_by_role("button", name="Save alert settings").click()
    expect(page.get_by_text("Alert settings saved.")).to_be_visible()
    assert "/alerts/settings/" in page.url
    expect(page.get_by_label("Telegram chats")).to_be_checked()
    expect(page.get_by_label("A broadcast paused itself (safety stop)")).not_to_be_checked()
    chosen = live.outside_event_loop(lambda: AlertSettings.objects.get(tenant=named.acme))
    assert chosen.channels == ["email", "telegram"] and chosen.telegram_chat_ids == ["-1001234567890"]
    assert chosen.kinds == ["session_down", "webhooks_dead"]
    assert_fits_phone(page, "the alert settings after saving")
    page.context.close()

    found = []
    check_pages(browser, live_system, named.alice.email, [("/alerts/", 200), ("/alerts/settings/", 200)], found)
    check_pages(browser, live_system, named.admin.email, [("/platform/alerts/", 200)], found)
    assert not found, "accessibility violations:\n" + "\n".join(found)
