"""The branded error pages (templates/errors/): inside the site's layout, saying why and where to go next; the
platform's pages refuse tenants with the site's 403, and so does a form posted without its CSRF token."""
import pytest
from django.test import Client, override_settings


LAYOUT = ('<header class="topbar">', 'name="viewport" content="width=device-width, initial-scale=1"',
          "/static/css/app.css")


def assert_in_layout(html):
    for part in LAYOUT:
        assert part in html, part
    assert "URLconf" not in html and "Traceback" not in html and "<h1>Forbidden" not in html


@pytest.mark.parametrize("url", ["/platform/", "/platform/tenants/"])
def test_an_owner_on_the_platform_pages_gets_the_branded_403_saying_why(client, named, url):
    client.force_login(named.alice)
    response = client.get(url)
    assert response.status_code == 403
    html = response.content.decode()
    assert_in_layout(html)
    assert 'data-testid="error-403"' in html and "for the platform&#x27;s administrators" in html
    assert "alice@acme.test" in html and 'href="/home/">Go to your dashboard' in html
    assert 'href="/dashboard/"' in html  # the tenant's menu is there: it is a page of the site


def test_a_refusal_says_the_views_own_reason(client, named):
    client.force_login(named.bob)  # a member: only owners change billing
    response = client.post("/billing/checkout", {"plan": "pro", "interval": "monthly"})
    assert response.status_code == 403
    assert "Only an owner can change billing." in response.content.decode()


def test_a_form_without_its_csrf_token_is_the_branded_403(named):
    client = Client(enforce_csrf_checks=True)
    client.force_login(named.alice)
    response = client.post("/dashboard/api-keys/", {"name": "CRM"})
    assert response.status_code == 403
    html = response.content.decode()
    assert_in_layout(html)
    assert 'data-testid="error-403"' in html and "This form has expired" in html


def test_a_missing_page_says_what_was_asked_and_the_way_back(client, named):
    response = client.get("/no-such-page/")
    html = response.content.decode()
    assert response.status_code == 404 and 'data-testid="error-404"' in html
    assert_in_layout(html)
    assert "<code>/no-such-page/</code>" in html and 'href="/accounts/login/"' in html
    client.force_login(named.alice)
    assert 'href="/home/">Go to your dashboard' in client.get("/no-such-page/").content.decode()


@override_settings(ROOT_URLCONF="tests.test_errors", DEBUG=False)  # its URLconf has a view that fails
def test_the_500_page_stands_alone_in_the_sites_look(client, db):
    client.raise_request_exception = False
    response = client.get("/boom/")
    html = response.content.decode()
    assert response.status_code == 500 and 'data-testid="error-500"' in html
    assert_in_layout(html)
    assert f'data-testid="request-id">{response["X-Request-ID"]}<' in html


@pytest.mark.parametrize("debug", [False, True])
def test_static_files_are_served_whatever_debug_says(client, db, settings, debug):
    """The guard answers an unmatched address itself with DEBUG on: never one of WhiteNoise's static files (the
    pages would lose their stylesheet)."""
    settings.DEBUG = debug
    settings.WHITENOISE_USE_FINDERS = settings.WHITENOISE_AUTOREFRESH = True
    response = client.get("/static/css/app.css")
    assert response.status_code == 200 and b".topbar" in b"".join(response.streaming_content)
