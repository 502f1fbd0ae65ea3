"""Billing in a real browser against real processes: the trial banner, the read-only state after the trial
ends unpaid (banner, Pay link, the API's 402), and a manual payment by the platform admin restoring access
while the owner's return page waits for the activation.

The billing clock is driven from the test process (`run_billing_clock(now=…)`), as Celery beat would."""
import json
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import expect

from . import live
from .live import PHONE, TIMEOUT_MS, assert_fits_phone, log_in, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)
SCREENSHOTS = Path("/tmp")


def api_post(live_system, path, raw_key, payload):
    """(status, body) of a JSON POST to the live server, outside the browser."""
    request = urllib.request.Request(f"{live_system.url}{path}", data=json.dumps(payload).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {raw_key}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_trial_banner_then_read_only_with_pay_link_and_402_then_manual_payment(live_system, launch_chromium, named):
    from accounts.actions import create_api_key
    from billing.actions import run_billing_clock
    from billing.models import Subscription

    _, raw_key = create_api_key(user=named.alice, tenant=named.acme, name="shop")
    trial_end = Subscription.objects.get(tenant=named.acme).trial_ends_at
    Subscription.objects.filter(tenant=named.globex).update(trial_ends_at=trial_end + timedelta(days=30))
    browser = launch_chromium()

    # --- on trial: the banner counts the days; the API accepts writes ------------------------------------
    owner = new_page(browser, live_system)
    log_in(owner, named.alice.email)
    expect(owner.get_by_test_id("dashboard-title")).to_have_text("Acme")
    banner = owner.get_by_test_id("trial-banner")
    expect(banner).to_contain_text("7 days left in your free trial")
    expect(banner.get_by_role("link", name="choose a plan")).to_have_attribute("href", "/billing/")
    status, body = api_post(live_system, "/api/v1/api-keys", raw_key, {"name": "while on trial"})
    assert status == 201, body

    # --- the trial ends unpaid: read-only --------------------------------------------------------------
    done = live.outside_event_loop(run_billing_clock, now=trial_end + timedelta(minutes=1))
    assert done["read_only"] == 1
    owner.reload()
    read_only = owner.get_by_test_id("read-only-banner")
    expect(read_only).to_contain_text("The trial has ended: this business is read-only until")
    expect(owner.get_by_test_id("trial-banner")).to_have_count(0)
    expect(owner.get_by_test_id("notification").first).to_contain_text("Your trial has ended")

    status, body = api_post(live_system, "/api/v1/api-keys", raw_key, {"name": "after the trial"})
    assert status == 402, body
    assert body["error"]["code"] == "payment_required"

    # The API keys page still lists keys but refuses a new one, with the reason.
    owner.goto("/dashboard/api-keys/")
    expect(owner.get_by_test_id("key-row")).to_have_count(2)
    owner.get_by_label("New key name").fill("from the page")
    owner.get_by_role("button", name="Create key").click()
    expect(owner.locator(".msg.error")).to_contain_text("The trial has ended")
    expect(owner.get_by_test_id("key-row")).to_have_count(2)

    # --- on a phone: the banner and the Billing page fit ---------------------------------------------------
    owner.set_viewport_size(PHONE)
    owner.goto("/dashboard/")
    expect(owner.get_by_test_id("read-only-banner")).to_be_visible()
    owner.screenshot(path=str(SCREENSHOTS / "billing-dashboard-read-only-390.png"), full_page=True)
    assert_fits_phone(owner, "the read-only dashboard")
    owner.get_by_test_id("read-only-banner").get_by_role("link", name="Pay now").click()
    expect(owner.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    expect(owner.get_by_test_id("billing-problem")).to_contain_text("Acme is read-only.")
    expect(owner.get_by_test_id("offline-instructions")).to_be_visible()
    owner.screenshot(path=str(SCREENSHOTS / "billing-page-390.png"), full_page=True)
    assert_fits_phone(owner, "the Billing page")

    # The page Stripe Checkout returns to waits for the activation (the webhook may come after the browser).
    owner.goto("/billing/return/?session_id=cs_test_browser")
    expect(owner.get_by_test_id("return-title")).to_have_text("Payment received — activating…")

    # --- the platform admin records the bank transfer: access returns at once ---------------------------
    admin = new_page(browser, live_system, viewport=PHONE)
    log_in(admin, named.admin.email)
    admin.goto("/platform/tenants/")
    admin.get_by_test_id("billing-acme").click()
    expect(admin.get_by_role("heading", name="Billing of Acme")).to_be_visible()
    form = admin.get_by_test_id("form-manual-payment")
    form.get_by_label("Amount").fill("49")
    form.get_by_label("Reference").fill("BCA-20261121")
    form.get_by_role("button", name="Record payment").click()
    expect(admin.locator(".msg.success")).to_contain_text("Payment of USD 49 recorded")
    expect(admin.get_by_test_id("payment-row")).to_contain_text("BCA-20261121")
    admin.screenshot(path=str(SCREENSHOTS / "billing-admin-panel-390.png"), full_page=True)
    assert_fits_phone(admin, "the admin billing panel")

    # The owner's waiting page turns to active by itself (it polls /billing/status.json every 2 s).
    expect(owner.get_by_test_id("return-title")).to_have_text("Your subscription is active")
    owner.get_by_role("link", name="Go to the dashboard").click()
    expect(owner.get_by_test_id("dashboard-title")).to_have_text("Acme")
    expect(owner.get_by_test_id("read-only-banner")).to_have_count(0)
    expect(owner.get_by_test_id("billing-card")).to_contain_text("Active")
    status, body = api_post(live_system, "/api/v1/api-keys", raw_key, {"name": "paid again"})
    assert status == 201, body
