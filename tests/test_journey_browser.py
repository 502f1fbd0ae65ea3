"""The sign-up journey in a real browser against real processes (daphne, a Celery worker, Postgres, Redis).

Users act only through the pages: links, forms, the emails the servers send. The test process prepares
only what no user does through the UI (a platform admin account, a warm pool schema, a decided application).
"""
import re
import secrets
from pathlib import Path

from playwright.sync_api import expect

from conftest import PASSWORD, make_user

from . import live
from .live import TIMEOUT_MS, new_page

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)
CONFIRM_LINK = r"https?://\S+/accounts/confirm-email/\S+"
SCREENSHOT_390 = Path("/tmp/dashboard-390.png")


def log_in(page, email, password=PASSWORD):
    page.goto("/")
    page.get_by_role("link", name="Log in").first.click()
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def watch_live_updates(page):
    """Record how the page learns about status changes: websocket frames and /status.json polls."""
    seen = {"ws_opened": False, "ws_frames": [], "polls": 0}

    def on_websocket(ws):
        if "/ws/tenant/status/" in ws.url:
            seen["ws_opened"] = True
            ws.on("framereceived", lambda payload: seen["ws_frames"].append(payload))

    page.on("websocket", on_websocket)
    page.on("request", lambda request: seen.__setitem__("polls", seen["polls"] + (
        1 if request.url.endswith("/status.json") else 0)))
    return seen


def test_signup_confirm_approval_and_live_dashboard(live_system, launch_chromium):
    from tenants.models import Tenant
    from tenants.pool import fill_pool, pooled_count

    run = secrets.token_hex(3)
    business = f"Kiosk Verde {run}"
    slug = f"kiosk-verde-{run}"
    owner_email = f"owner-{run}@kiosk.test"
    admin_email = f"admin-{run}@platform.test"
    # Set up before the browser starts (Playwright's loop blocks the ORM in this thread afterwards).
    make_user(admin_email, full_name="Platform Admin", staff=True)
    fill_pool(1)  # approval takes the pooled path: active at once
    pooled_schema = Tenant.objects.get(status=Tenant.Status.POOLED).schema_name

    browser = launch_chromium()

    # --- the owner registers ---------------------------------------------------------------------
    owner = new_page(browser, live_system)
    live_updates = watch_live_updates(owner)
    owner.goto("/")
    owner.get_by_role("link", name="Register your business").click()
    expect(owner.get_by_role("heading", name="Register your business")).to_be_visible()
    owner.get_by_label("Business name").fill(business)
    owner.get_by_label("Your name").fill("Olivia Owner")
    owner.get_by_label("Email", exact=True).fill(owner_email)
    owner.get_by_label("Phone").fill("+14155550123")
    owner.get_by_label("Plan you want").select_option(label="Basic")
    owner.get_by_label("Password", exact=True).fill(PASSWORD)
    owner.get_by_label("Password (again)").fill(PASSWORD)
    owner.get_by_role("button", name="Create account").click()
    expect(owner.get_by_role("heading", name=re.compile("verify your email", re.I))).to_be_visible()

    # --- confirms the address from the email the server sent ---------------------------------------
    confirmation = live_system.mailbox.wait_for(to=owner_email, subject_contains="confirm")
    owner.goto(live_system.mailbox.link(confirmation, CONFIRM_LINK))
    owner.get_by_role("button", name="Confirm").click()
    awaiting = owner.get_by_test_id("awaiting-approval")
    expect(awaiting).to_contain_text(business)
    assert owner.url.endswith("/awaiting-approval/")
    # From here on the test never navigates the owner's page: it has to change by itself.

    # --- the platform admin approves, in a separate browser context ---------------------------------
    admin = new_page(browser, live_system)
    log_in(admin, admin_email)
    expect(admin.get_by_test_id("pending-badge")).to_have_text("1")
    admin.get_by_test_id("nav-approvals").click()
    card = admin.get_by_test_id(f"pending-{slug}")
    expect(card).to_contain_text(owner_email)
    expect(card).to_contain_text("+14155550123")
    card.get_by_test_id(f"approve-{slug}").click()
    expect(admin.get_by_text(f"{business} approved; its trial has started.")).to_be_visible()
    expect(admin.get_by_test_id("no-pending")).to_be_visible()
    expect(admin.get_by_test_id("pending-badge")).to_be_hidden()

    # --- the owner's awaiting page turns into the dashboard by itself ------------------------------
    expect(owner.get_by_test_id("dashboard-title")).to_have_text(business)
    assert owner.url.endswith("/dashboard/")
    expect(owner.get_by_test_id("trial-banner")).to_contain_text("7 days")
    expect(owner.get_by_test_id("plan-name")).to_have_text("Basic")
    via_websocket = any('"active"' in str(frame) for frame in live_updates["ws_frames"])
    print(f"owner's page learned of the approval via {'the websocket' if via_websocket else 'polling'} "
          f"(websocket opened: {live_updates['ws_opened']}, frames: {len(live_updates['ws_frames'])}, "
          f"status.json polls: {live_updates['polls']})")
    assert via_websocket or live_updates["polls"], "the dashboard appeared without a live update"

    # Approval took the pooled schema, and the worker refills the pool behind it.
    tenant = live.outside_event_loop(lambda: Tenant.objects.get(slug=slug))
    assert tenant.status == Tenant.Status.ACTIVE and tenant.schema_name == pooled_schema
    live.wait_until(lambda: live.outside_event_loop(pooled_count) == 1, timeout=60, interval=0.5,
                    message="the worker to refill the tenant pool")

    # --- the worker emailed the owner --------------------------------------------------------------
    approval = live_system.mailbox.wait_for(to=owner_email, subject_contains="is approved")
    assert business in str(approval["Subject"])
    assert f"{live_system.url}/accounts/login/" in live_system.mailbox.text(approval)

    # --- the dashboard on a phone-sized screen -----------------------------------------------------
    owner.set_viewport_size({"width": 390, "height": 844})
    expect(owner.get_by_test_id("trial-banner")).to_be_visible()
    owner.screenshot(path=str(SCREENSHOT_390), full_page=True)
    scroll_width = owner.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 390, f"horizontal overflow at 390 px: scrollWidth={scroll_width}"
    # The navigation folds into a menu button at this width; opened, it still fits.
    expect(owner.get_by_role("link", name="API keys", exact=True)).to_be_hidden()
    owner.locator("label[for=nav-toggle]").click()
    expect(owner.get_by_role("link", name="API keys", exact=True)).to_be_visible()
    scroll_width = owner.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 390, f"horizontal overflow at 390 px with the menu open: scrollWidth={scroll_width}"


def test_rejected_applicant_sees_the_reason(live_system, launch_chromium, plans):
    from accounts.actions import register_business
    from tenants.actions import reject_tenant

    run = secrets.token_hex(3)
    applicant_email = f"applicant-{run}@shady.test"
    reason = "We could not verify the business registration number you gave."
    admin = make_user(f"admin-{run}@platform.test", full_name="Platform Admin", staff=True)
    applicant = make_user(applicant_email, full_name="Rick Applicant")
    tenant = register_business(user=applicant, business_name=f"Shady Deals {run}", plan=plans["basic"],
                               phone="+14155550123")
    reject_tenant(tenant, acting_user=admin, reason=reason)

    page = new_page(launch_chromium(), live_system)
    log_in(page, applicant_email)
    expect(page.get_by_test_id("rejection-reason")).to_have_text(reason)
    assert page.url.endswith("/rejected/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Shady Deals {run}")

    # The rejection email was sent by the real worker, from the task the test process published.
    rejection = live_system.mailbox.wait_for(to=applicant_email, subject_contains="application")
    assert reason in live_system.mailbox.text(rejection)
