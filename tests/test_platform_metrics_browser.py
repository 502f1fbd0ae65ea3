"""The platform Metrics page in a real browser against real processes, at 390 px: reached from the platform
navigation, no serious accessibility violation, nothing wider than the phone, the workspaces sorted by the server
through plain links (no script needed); and the processes it describes are real: both daphnes of scripts/web.py and
the worker write heartbeats with their memory, which health reports.

acme and globex are workspaces; admin is a platform admin.
"""
import time

from playwright.sync_api import expect

from analytics.tests.test_analytics_page import traffic

from . import live
from .live import PHONE, TIMEOUT_MS, assert_fits_phone, log_in, new_page
from .test_accessibility_browser import blocking_violations, describe

pytestmark = live.BROWSER_TEST

expect.set_options(timeout=TIMEOUT_MS)


def test_the_metrics_page_sorts_on_the_server_and_fits_a_phone(named, live_system, launch_chromium):
    traffic(named.acme, sent=3, received=2, failed=1)  # volume 5, failure rate 25 %
    traffic(named.globex, sent=6, received=4, failed=0)  # volume 10, failure rate 0 %
    browser = launch_chromium()
    # bypass_csp: axe is added to the page as an inline script, which the site's CSP (rightly) refuses.
    page = new_page(browser, live_system, viewport=PHONE, bypass_csp=True)
    log_in(page, named.admin.email)
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.locator("label[for=nav-toggle]").click()
    page.get_by_test_id("nav-metrics").click()
    expect(page.get_by_role("heading", name="Metrics", exact=True)).to_be_visible()
    expect(page.locator("[data-figure='messages.sent']")).to_have_text("9")
    rows = page.locator("[data-testid^='metrics-tenant-']")
    expect(rows.first).to_have_attribute("data-testid", "metrics-tenant-globex")  # by volume, highest first
    assert_fits_phone(page, "the platform metrics page")
    found = [describe(violation) for violation in blocking_violations(page)]
    assert not found, "accessibility violations:\n" + "\n".join(found)

    page.get_by_test_id("sort-failure_rate").click()  # a link: the server sorts
    page.wait_for_url(lambda url: "sort=failure_rate" in url)
    expect(rows.first).to_have_attribute("data-testid", "metrics-tenant-acme")
    expect(page.get_by_test_id("sort-failure_rate")).to_contain_text("highest first")
    page.get_by_test_id("sort-failure_rate").click()  # again: lowest first
    page.wait_for_url(lambda url: "order=asc" in url)
    expect(rows.first).to_have_attribute("data-testid", "metrics-tenant-globex")
    assert_fits_phone(page, "the platform metrics page sorted")

    # Both daphnes and the worker say they are alive, with their memory (what the memory alert reads).
    deadline = time.monotonic() + 20
    while True:
        checks = page.request.get(f"{live_system.url}/api/v1/health/detailed").json()
        detail = (checks.get("data") or checks["error"]["details"])["checks"]["workers"]["detail"]
        if len(detail["web"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(detail["web"]) == 2 and all(process["rss_mb"] > 10 for process in detail["web"]), detail
    assert all(worker["rss_mb"] > 10 for worker in detail["workers"]), detail
