"""API throttles (core.throttles): per API key, per user, per client IP for the endpoints open without a key; a
refusal is 429 `throttled` in the envelope with Retry-After; one client's excess never touches another's; every
API view has them, and every operation of the schema says 429 with Retry-After."""
import json
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.urls import get_resolver
from django_tenants.utils import tenant_context
from rest_framework.schemas.generators import EndpointEnumerator
from rest_framework.test import APIClient

from accounts.actions import create_api_key
from core.throttles import AnonymousThrottle, ApiKeyThrottle, UserThrottle
from whatsapp.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(api_key=None, user=None, anon=None):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                                   "DEFAULT_THROTTLE_RATES": {"api_key": api_key, "user": user, "anon": anon}}
    return set_rates


def client_with_key(user, tenant):
    _, raw = create_api_key(user=user, tenant=tenant, name="throttled")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def refused(response, scope, limit):
    assert response.status_code == 429, response.content[:300]
    error = json.loads(response.content)["error"]
    assert error["code"] == "throttled"
    assert error["message"].startswith("Too many requests from ") and "Try again in " in error["message"]
    assert f"at most {limit} a minute" in error["message"]
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 60
    assert error["details"] == {"retry_after": wait, "scope": scope, "limit": limit, "period": 60}
    return error


def test_a_key_over_its_rate_gets_429_with_retry_after_and_another_key_does_not(named, rates):
    rates(api_key="3/min")
    first, second = client_with_key(named.alice, named.acme), client_with_key(named.alice, named.acme)
    for _ in range(3):
        assert first.get("/api/v1/me").status_code == 200
    error = refused(first.get("/api/v1/conversations"), "api_key", 3)  # every endpoint counts, not only sends
    assert "this API key" in error["message"]
    assert second.get("/api/v1/me").status_code == 200  # the same user's other key has its own count
    assert client_with_key(named.bob, named.acme).get("/api/v1/me").status_code == 200


def test_a_user_is_counted_over_all_their_keys_and_their_browser_session(named, rates):
    rates(user="4/min")
    first, second = client_with_key(named.alice, named.acme), client_with_key(named.alice, named.acme)
    browser = APIClient()
    browser.force_login(named.alice)
    assert first.get("/api/v1/me").status_code == 200
    assert second.get("/api/v1/me").status_code == 200
    assert browser.get("/api/v1/me").status_code == 200
    assert first.get("/api/v1/me").status_code == 200
    refused(second.get("/api/v1/me"), "user", 4)
    refused(browser.get("/api/v1/me"), "user", 4)
    assert client_with_key(named.bob, named.acme).get("/api/v1/me").status_code == 200  # bob is not alice
    assert client_with_key(named.carol, named.globex).get("/api/v1/me").status_code == 200


def test_anonymous_requests_are_counted_per_ip_and_a_forwarded_for_header_changes_nothing(rates):
    rates(anon="2/min")
    client = APIClient()
    for _ in range(2):
        assert client.get("/api/v1/health/detailed", REMOTE_ADDR="198.51.100.7").status_code in (200, 503)
    refused(client.get("/api/v1/health/detailed", REMOTE_ADDR="198.51.100.7"), "anon", 2)
    # The client's own X-Forwarded-For is not believed (NUM_PROXIES = 0): still the same address.
    refused(client.get("/api/v1/health/detailed", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.9"),
            "anon", 2)
    assert client.get("/api/v1/health/detailed", REMOTE_ADDR="198.51.100.8").status_code in (200, 503)


def test_the_throttled_request_changes_nothing(named, rates):
    rates(api_key="1/min")
    client = client_with_key(named.alice, named.acme)
    assert client.get("/api/v1/me").status_code == 200
    response = client.post("/api/v1/webhooks", data={"url": "https://hooks.example.com/x", "events": ["message.received"]},
                           format="json")
    refused(response, "api_key", 1)
    with tenant_context(named.acme):
        assert not WebhookEndpoint.objects.exists()


def test_an_unreachable_redis_lets_requests_through_rather_than_failing_them(named, rates, settings):
    rates(api_key="1/min", user="1/min", anon="1/min")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with_key = SimpleNamespace(auth=SimpleNamespace(pk=1), user=named.alice, META={"REMOTE_ADDR": "198.51.100.9"})
    anonymous = SimpleNamespace(auth=None, user=AnonymousUser(), META={"REMOTE_ADDR": "198.51.100.9"}, headers={})
    for throttle, request in ((ApiKeyThrottle(), with_key), (UserThrottle(), with_key),
                              (AnonymousThrottle(), anonymous)):
        assert throttle.allow_request(request, None) and throttle.allow_request(request, None)


def test_off_means_no_throttle(named, rates):
    rates()
    client = client_with_key(named.alice, named.acme)
    for _ in range(5):
        assert client.get("/api/v1/me").status_code == 200


def test_the_default_rates_are_set_and_generous():
    from django.conf import settings

    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert rates == {"api_key": "3000/min", "user": "6000/min", "anon": "300/min"}


def test_every_api_view_is_throttled():
    wanted = {ApiKeyThrottle, UserThrottle, AnonymousThrottle}
    endpoints = EndpointEnumerator(patterns=get_resolver().url_patterns).get_api_endpoints()
    api = [(path, callback) for path, _, callback in endpoints if path.startswith("/api/")]
    assert len(api) > 50
    unthrottled = [path for path, callback in api if not wanted <= {type(t) for t in callback.cls().get_throttles()}]
    assert not unthrottled, unthrottled


def test_every_operation_documents_429_with_retry_after():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    missing = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            answer = operation["responses"].get("429")
            if answer is None or "Retry-After" not in answer.get("headers", {}):
                missing.append(f"{method.upper()} {path}")
    assert not missing, missing
