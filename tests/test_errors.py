"""Errors outside the views' own handling: the envelope under /api/ (never HTML), branded pages elsewhere, a
request id on every answer, NUL bytes refused before they reach a view or Postgres."""
import json

import pytest
from django.test import override_settings
from django.urls import path

from config import errors
from config.urls import urlpatterns as site_urlpatterns


def boom(request):
    raise RuntimeError("a bug")


urlpatterns = [path("api/v1/boom", boom), path("boom/", boom), *site_urlpatterns]
handler400, handler403, handler404, handler500 = (errors.bad_request, errors.forbidden, errors.not_found,
                                                  errors.server_error)


def envelope(response, status, code):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body["success"] is False and body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("url", ["/api/v1/no-such", "/api/v1/messages/abc", "/api/v1/../../etc/passwd",
                                 "/api/v2/messages"])
def test_unmatched_api_routes_answer_the_envelope(client, db, settings, debug, url):
    settings.DEBUG = debug
    envelope(client.get(url), 404, "not_found")


@pytest.mark.parametrize("debug", [False, True])
def test_a_missing_page_is_branded_and_lists_no_routes(client, db, settings, debug):
    settings.DEBUG = debug
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and b'data-testid="error-404"' in response.content
    assert b"URLconf" not in response.content and b"api/v1/" not in response.content


@pytest.mark.parametrize("url", ["/api/v1/contacts?search=a%00b", "/api/v1/sessions/a%00b",
                                 "/api/v1/messages?session=x%00", "/api/v1/test-helpers/sessions/a%00b/scan"])
def test_a_nul_byte_in_an_api_address_is_400(client, db, url):
    envelope(client.get(url), 400, "invalid_request")


def test_a_nul_byte_in_a_page_address_is_a_branded_400(client, db):
    response = client.get("/sessions/a%00b/")
    assert response.status_code == 400 and b'data-testid="error-400"' in response.content


@override_settings(ROOT_URLCONF=__name__, DEBUG=True)
def test_a_bug_under_api_is_500_internal_error_with_a_request_id_even_with_debug(client, db):
    client.raise_request_exception = False
    response = client.get("/api/v1/boom")
    error = envelope(response, 500, "internal_error")
    assert error["details"]["request_id"] == response["X-Request-ID"] and len(response["X-Request-ID"]) == 32
    assert b"Traceback" not in response.content and b"a bug" not in response.content


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_a_bug_on_a_page_is_the_branded_500_with_its_reference(client, db):
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500 and b'data-testid="error-500"' in response.content
    assert response["X-Request-ID"].encode() in response.content


def test_a_body_over_the_limit_is_413_request_too_large(api_as, named, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = api_as(named.alice)
    response = client.post("/api/v1/messages", data=json.dumps({"session": "x", "to": "+14155550123",
                                                                "text": "a" * 5000}),
                           content_type="application/json")
    envelope(response, 413, "request_too_large")


def test_every_answer_carries_a_request_id(client, db):
    first, second = client.get("/health"), client.get("/health")
    assert first["X-Request-ID"] and first["X-Request-ID"] != second["X-Request-ID"]


def test_pages_say_which_browser_features_they_never_use_and_keep_the_referrer_at_home(client, db):
    response = client.get("/")
    policy = response["Permissions-Policy"]
    assert "camera=()" in policy and "microphone=()" in policy and "geolocation=()" in policy
    assert response["Referrer-Policy"] == "same-origin"

