"""The per-tenant send rate limit: a sliding window in Redis of WHATSAPP_RATE_LIMIT_WINDOW seconds, the lower of
the plan's messages_per_minute (scaled to the window) and WHATSAPP_RATE_LIMIT_PER_COMPANY. Over it: 429
rate_limited with a Retry-After header and no row written. Windows are per tenant (Acme, Globex).

The window's clock is whatsapp.messaging.ratelimit._clock, set by the tests (no sleeping, no timed assertions).
"""
import pytest
from django_tenants.utils import tenant_context

from whatsapp.messaging import ratelimit
from whatsapp.models import Message, WhatsAppSession
from whatsapp.tests.support import error, ok

V1 = "/api/v1"
T0 = 1_900_000_000.0


@pytest.fixture
def clock(monkeypatch):
    now = {"t": T0}
    monkeypatch.setattr(ratelimit, "_clock", lambda: now["t"])
    return now


@pytest.fixture
def clients(named, api_as, clock, settings):
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1
    settings.WHATSAPP_RATE_LIMIT_WINDOW = 60
    for tenant in (named.acme, named.globex):
        ratelimit.reset(tenant)
        with tenant_context(tenant):
            WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
    yield {"alice": api_as(named.alice), "carol": api_as(named.carol)}
    for tenant in (named.acme, named.globex):
        ratelimit.reset(tenant)


def set_plan_rate(tenant, per_minute):
    plan = tenant.subscription.plan  # the object plan_of(tenant) reads
    plan.messages_per_minute = per_minute
    plan.save(update_fields=["messages_per_minute"])


def send(client, text="hi"):
    return client.post(f"{V1}/messages", {"session": "front-desk", "to": "+6281234567890", "text": text},
                       format="json")


def count(tenant):
    with tenant_context(tenant):
        return Message.objects.count()


def test_over_the_plans_rate_is_429_with_retry_after_and_nothing_written(named, clients, clock):
    set_plan_rate(named.acme, 3)
    for second in range(3):
        clock["t"] = T0 + second * 10
        ok(send(clients["alice"]), 202)
    clock["t"] = T0 + 25
    response = send(clients["alice"], "one too many")
    err = error(response, 429, "rate_limited")
    # The oldest accepted request (at T0) leaves the window at T0 + 60: 35 s from now.
    assert response["Retry-After"] == "35"
    assert err["details"] == {"limit": 3, "window": 60, "retry_after": 35}
    assert "3 per 60 seconds" in err["message"]
    assert count(named.acme) == 3
    with tenant_context(named.acme):
        assert not Message.objects.filter(text="one too many").exists()


def test_the_window_slides_and_refusals_do_not_count(named, clients, clock):
    set_plan_rate(named.acme, 2)
    ok(send(clients["alice"]), 202)
    clock["t"] = T0 + 30
    ok(send(clients["alice"]), 202)
    clock["t"] = T0 + 59
    assert send(clients["alice"]).status_code == 429
    clock["t"] = T0 + 60.5  # the first request left the window; the refused one was never counted
    ok(send(clients["alice"]), 202)
    assert send(clients["alice"]).status_code == 429
    clock["t"] = T0 + 90.5
    ok(send(clients["alice"]), 202)
    assert count(named.acme) == 4


def test_tenants_have_their_own_windows(named, clients, clock):
    set_plan_rate(named.acme, 1)
    ok(send(clients["alice"]), 202)
    error(send(clients["alice"]), 429, "rate_limited")
    ok(send(clients["carol"]), 202)  # Globex's window is its own
    ok(send(clients["carol"]), 202)
    assert (count(named.acme), count(named.globex)) == (1, 2)


def test_the_installation_ceiling_applies_below_the_plan(named, clients, settings):
    set_plan_rate(named.globex, 120)
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = 2
    ok(send(clients["carol"]), 202)
    ok(send(clients["carol"]), 202)
    err = error(send(clients["carol"]), 429, "rate_limited")
    assert err["details"]["limit"] == 2


def test_the_plan_rate_is_scaled_to_the_window(named, clients, settings):
    settings.WHATSAPP_RATE_LIMIT_WINDOW = 10
    set_plan_rate(named.acme, 12)  # 12 a minute = 2 per 10 s
    assert ratelimit.limit_for(named.acme) == (2, 10)
    ok(send(clients["alice"]), 202)
    ok(send(clients["alice"]), 202)
    response = send(clients["alice"])
    assert error(response, 429, "rate_limited")["details"] == {"limit": 2, "window": 10, "retry_after": 10}
    assert response["Retry-After"] == "10"


def test_unlimited_plans_and_no_ceiling_mean_no_limit(named, clients):
    set_plan_rate(named.acme, -1)
    assert ratelimit.limit_for(named.acme) == (None, 60)
    for _ in range(5):
        ok(send(clients["alice"]), 202)
