"""The security headers of every answer: Content-Security-Policy (django-csp) without inline scripts or styles,
Referrer-Policy, Permissions-Policy, X-Frame-Options; and templates that need nothing inline (checked in the
source, so a new onclick= or style= fails here before it fails in a browser). The pages working under the
policy in Chromium: tests/test_csp_browser.py."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def directives(response):
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.django_db
def test_a_page_refuses_inline_scripts_and_styles_and_framing(client):
    response = client.get("/accounts/login/")
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    # The live pages' websockets, on the host asked for only (CSP 2 browsers don't read 'self' as ws:).
    assert policy["connect-src"] == ["'self'", "ws://testserver"]
    assert "unsafe" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    features = response["Permissions-Policy"]
    assert "camera=()" in features and "microphone=()" in features and "geolocation=()" in features


@pytest.mark.django_db
def test_behind_https_the_sockets_are_wss(client):
    response = client.get("/accounts/login/", secure=True)
    assert directives(response)["connect-src"] == ["'self'", "wss://testserver"]


@pytest.mark.django_db
def test_api_answers_carry_the_headers_too(client):
    response = client.get("/api/v1/messages")
    assert response.status_code == 401
    assert directives(response)["script-src"] == ["'self'"]
    assert response["Referrer-Policy"] == "same-origin"


def test_only_the_billing_page_may_send_a_form_on_to_stripe(client, named, settings):
    client.force_login(named.alice)
    billing = directives(client.get("/billing/"))
    # Its forms are answered with a redirect to Stripe, which Chromium holds to form-action as well.
    assert billing["form-action"] == ["'self'", *settings.STRIPE_REDIRECT_ORIGINS]
    assert "https://checkout.stripe.com" in billing["form-action"]
    assert directives(client.get("/dashboard/"))["form-action"] == ["'self'"]


@pytest.mark.django_db
def test_the_api_docs_page_loads_its_start_up_script_from_a_url(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert directives(page)["script-src"] == ["'self'"]
    assert "<style" not in html
    inline = [s for s in re.findall(r"<script([^>]*)>", html) if "src=" not in s]
    assert not inline, inline
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content


# --- the templates ---------------------------------------------------------------------------------------------

TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
INLINE = {
    "an event handler attribute": re.compile(r"\son[a-z]+\s*=\s*[\"']", re.I),
    "a style attribute": re.compile(r"\sstyle\s*=\s*[\"']", re.I),
    "a <style> element": re.compile(r"<style[\s>]", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
    # A script with no src, unless it is data (type="application/json", as allauth's and json_script's are).
    "an inline <script>": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I),
}


def inline_code(text):
    return [what for what, pattern in INLINE.items() if pattern.search(text)]


def test_no_template_needs_inline_script_or_style():
    found = [f"{path.relative_to(ROOT)}: {what}" for path in TEMPLATES for what in inline_code(path.read_text())]
    assert TEMPLATES and not found, "\n".join(found)


def test_the_template_check_finds_each_kind():
    assert inline_code('<form onsubmit="return confirm(1)">') == ["an event handler attribute"]
    assert inline_code('<p style="color: red">') == ["a style attribute"]
    assert inline_code("<style>p {}</style>") == ["a <style> element"]
    assert inline_code('<a href="javascript:void(0)">') == ["a javascript: URL"]
    assert inline_code("<script>alert(1)</script>") == ["an inline <script>"]
    assert inline_code('<script src="/static/js/site.js" defer></script>') == []
    assert inline_code('<script data-x type="application/json">{}</script>') == []
    assert inline_code('<form data-confirm="Delete it?">') == []


def test_csp_report_uri_comes_from_the_environment():
    from tests.test_settings import settings_value

    assert "report-uri" not in settings_value("CONTENT_SECURITY_POLICY['DIRECTIVES']")
    with_reports = settings_value("CONTENT_SECURITY_POLICY['DIRECTIVES']['report-uri']",
                                  CSP_REPORT_URI="https://reports.example.com/csp")
    assert with_reports == "['https://reports.example.com/csp']"
