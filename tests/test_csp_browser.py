"""The main pages under the Content-Security-Policy in Chromium, against the live system: not one violation (each is
caught by a `securitypolicyviolation` listener installed in every document, and by the console), and what used
inline scripts or handlers before still works: the confirm prompts (data-confirm), the analytics charts, the live QR
code of a session being linked, Swagger UI on /api/docs/.

The check can fail: a style attribute added by the test itself is reported.
"""
import re

import pytest
from playwright.sync_api import expect

from . import live
from .live import TIMEOUT_MS, log_in, new_page
from .test_accessibility_browser import fill_acme

pytestmark = [*live.BROWSER_TEST, pytest.mark.slow]

expect.set_options(timeout=TIMEOUT_MS)

# Reported through the console, which Playwright hears from every document (the listener is added before any of
# the page's own scripts run).
REPORTER = """document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
                + ` (${(e.sample || "").slice(0, 80)})`);
});"""


@pytest.fixture
def live_whatsapp():
    return {"qr_seconds": 3, "max_qr_attempts": 40}


def watched_page(browser, live_system, problems):
    page = new_page(browser, live_system)
    page.context.add_init_script(REPORTER)

    def on_console(message):
        # Chromium's own "Refused to …" messages, and the reporter's.
        if "Content Security Policy" in message.text or "CSP violation" in message.text:
            problems.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"{page.url}: script error: {error}"))
    return page


def visit(page, path):
    response = page.goto(path)
    assert response.status == 200, (path, response.status)
    page.wait_for_load_state("load")
    header = response.headers["content-security-policy"]
    assert "script-src 'self'" in [part.strip() for part in header.split(";")] and "unsafe" not in header, header
    return response


def test_the_main_pages_raise_no_csp_violation_and_still_work(named, live_system, launch_chromium):
    ids = fill_acme(named)
    browser = launch_chromium()
    problems = []

    # --- a visitor ---------------------------------------------------------------------------------------
    visitor = watched_page(browser, live_system, problems)
    for path in ("/", "/accounts/signup/", "/accounts/password/reset/", "/accounts/login/"):
        visit(visitor, path)

    # --- the owner: every main page --------------------------------------------------------------------
    page = watched_page(browser, live_system, problems)
    log_in(page, named.alice.email)
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    for path in ("/dashboard/", "/sessions/front-desk/", "/conversations/", f"/conversations/{ids['conversation']}/",
                 "/webhooks/", "/sending/", "/automation/", "/dashboard/api-keys/", "/members/", "/billing/",
                 "/dashboard/settings/", "/audit/", "/broadcasts/", f"/broadcasts/{ids['campaign']}/",
                 "/broadcasts/contacts/", "/accounts/email/", "/accounts/2fa/", "/accounts/sessions/"):
        visit(page, path)

    visit(page, "/analytics/")
    expect(page.locator("#per-day-chart canvas")).to_have_count(1)  # uPlot drew its chart
    expect(page.locator("[data-table='heatmap'] tbody tr")).to_have_count(7)

    visit(page, "/conversations/")
    expect(page.locator("[data-live-state]").first).to_have_text("Live")  # the page's websocket connected

    # --- a session being linked: the QR code comes and changes live -------------------------------------
    visit(page, "/sessions/")
    page.get_by_label("Label").fill("Lobby")
    page.get_by_role("button", name="Add session").click()
    expect(page.get_by_test_id("session-title")).to_have_text("Lobby")
    page.get_by_test_id("start").click()
    qr = page.get_by_test_id("qr-image")
    expect(qr).to_have_attribute("data-qr-version", re.compile(r".+"))
    live.wait_until(lambda: qr.evaluate("img => img.complete && img.naturalWidth > 0"), timeout=10,
                    message="the QR image to load")

    # --- confirm prompts: "Cancel" keeps the session, "OK" deletes it ----------------------------------
    visit(page, "/sessions/")
    row = page.get_by_test_id("session-row-lobby")
    expect(row).to_be_visible()
    asked = []

    def answer(accept):
        def on_dialog(dialog):
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()
        return on_dialog

    page.once("dialog", answer(False))
    row.get_by_role("button", name="Delete").click()
    live.wait_until(lambda: asked, timeout=5, message="the confirm prompt")
    assert asked[-1] == "Delete Lobby? Its activity log goes too, and a linked phone is unlinked."
    page.wait_for_timeout(300)
    expect(row).to_be_visible()
    assert page.url.endswith("/sessions/")

    page.once("dialog", answer(True))
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_test_id("session-row-lobby")).to_have_count(0)
    assert len(asked) == 2

    # --- the API docs: Swagger UI draws the operations -------------------------------------------------
    visit(page, "/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Switchboard API")
    expect(page.locator(".opblock").first).to_be_visible()
    # "Try it out" calls the API from the page (connect-src), with the browser's session.
    # GET /api/v1/analytics/dashboard, found by its path (it was the first GET until /api/v1/alerts came before it).
    dashboard = page.locator(".opblock.opblock-get", has_text="/api/v1/analytics/dashboard").first
    expect(dashboard).to_contain_text("/analytics/dashboard")
    dashboard.locator(".opblock-summary").click()
    dashboard.get_by_role("button", name="Try it out").click()
    dashboard.get_by_role("button", name="Execute").click()
    expect(dashboard.locator(".live-responses-table tr.response .response-col_status")).to_have_text("200")

    # --- a platform admin's pages, Django's admin included ---------------------------------------------
    admin = watched_page(browser, live_system, problems)
    log_in(admin, named.admin.email)
    admin.wait_for_url(lambda url: "/accounts/login/" not in url)
    for path in ("/platform/", "/platform/tenants/", f"/platform/tenants/{named.acme.pk}/billing",
                 "/platform/backups/", "/platform/alerts/", "/admin/", "/admin/tenants/tenant/"):
        visit(admin, path)

    assert not problems, "CSP violations or script errors:\n" + "\n".join(problems)

    # --- and the check can fail: a style attribute written into the page is refused and reported --------
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">injected</p>')")
    live.wait_until(lambda: problems, timeout=5, message="the injected style attribute to be reported")
    assert "style-src" in problems[0], problems
