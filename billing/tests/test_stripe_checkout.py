"""Stripe Checkout and the customer portal, with the real stripe client talking to a local fake of Stripe."""
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditLog
from billing import stripe_gateway
from billing.models import Customer, Interval, Price, Subscription
from core.errors import DomainError

from .stripe_fake import PRICE_IDS, SECRET_KEY, stripe_api  # noqa: F401 (fixture)

CHECKOUT = "/v1/checkout/sessions"
CUSTOMERS = "/v1/customers"
PORTAL = "/v1/billing_portal/sessions"


def api_error(call):
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value


def test_checkout_creates_customer_and_session_and_keeps_the_trial(named, stripe_api):
    trial_end = Subscription.objects.get(tenant=named.acme).trial_ends_at

    url = stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")

    [created_customer] = stripe_api.requests_to(CUSTOMERS)
    assert created_customer.params["email"] == "alice@acme.test"
    assert created_customer.params["metadata"]["tenant_id"] == str(named.acme.pk)
    assert created_customer.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert created_customer.idempotency_key
    customer = Customer.objects.get(tenant=named.acme)
    assert customer.stripe_customer_id.startswith("cus_")

    [session] = stripe_api.requests_to(CHECKOUT)
    sent = session.params
    assert sent["mode"] == "subscription"
    assert sent["customer"] == customer.stripe_customer_id
    assert sent["client_reference_id"] == str(named.acme.pk)
    assert sent["line_items"] == [{"price": PRICE_IDS["basic:monthly"], "quantity": "1"}]
    assert sent["metadata"] == {"tenant_id": str(named.acme.pk), "plan": "basic", "interval": "monthly"}
    assert sent["subscription_data"]["metadata"]["tenant_id"] == str(named.acme.pk)
    assert sent["subscription_data"]["trial_end"] == str(int(trial_end.timestamp()))
    assert sent["success_url"] == "https://switchboard.test/billing/return/?session_id={CHECKOUT_SESSION_ID}"
    assert sent["cancel_url"] == "https://switchboard.test/billing/"
    assert session.idempotency_key and session.idempotency_key != created_customer.idempotency_key

    assert url.startswith("https://checkout.stripe.test/c/pay/cs_test_")
    customer.refresh_from_db()
    assert (customer.checkout_session_url, customer.checkout_key) == (url, "basic:monthly")
    assert AuditLog.objects.filter(action="billing.checkout_started", actor=named.alice, tenant=named.acme).count() == 1


@pytest.mark.parametrize("status, trial_left", [
    (Subscription.Status.TRIALING, timedelta(hours=47)),  # Stripe's minimum trial_end is 48 h away
    (Subscription.Status.ACTIVE, timedelta(days=5)),
    (Subscription.Status.READ_ONLY, -timedelta(days=1)),
])
def test_no_trial_end_unless_a_trial_has_more_than_48_hours_left(named, stripe_api, status, trial_left):
    Subscription.objects.filter(tenant=named.acme).update(status=status, trial_ends_at=timezone.now() + trial_left)

    stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")

    [session] = stripe_api.requests_to(CHECKOUT)
    assert "trial_end" not in session.params["subscription_data"]


def test_double_click_gives_one_session(named, stripe_api):
    first = stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")
    second = stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")

    assert first == second
    assert len(stripe_api.requests_to(CHECKOUT)) == 1
    assert len(stripe_api.requests_to(CUSTOMERS)) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_clicks_give_one_session(named, stripe_api):
    """Two requests at once (separate connections, a slow Stripe): the Customer row lock makes them queue."""
    stripe_api.delay = 0.3
    urls, errors = [], []

    def click():
        try:
            urls.append(stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan,
                                                      interval="monthly"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors
    assert len(urls) == 3 and len(set(urls)) == 1
    assert len(stripe_api.requests_to(CHECKOUT)) == 1
    assert len(stripe_api.requests_to(CUSTOMERS)) == 1


def test_another_choice_or_a_stale_session_opens_a_new_one_and_expires_the_old(named, stripe_api):
    basic = stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")
    pro = stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.globex.plan, interval="yearly")
    assert pro != basic
    assert stripe_api.requests_to(CHECKOUT)[1].params["line_items"][0]["price"] == PRICE_IDS["pro:yearly"]
    assert [r.path for r in stripe_api.requests if r.path.endswith("/expire")] == \
        [f"{CHECKOUT}/{basic.rsplit('/', 1)[1]}/expire"]

    Customer.objects.filter(tenant=named.acme).update(checkout_created_at=timezone.now() - timedelta(hours=23))
    again = stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.globex.plan, interval="yearly")
    assert again != pro
    keys = [r.idempotency_key for r in stripe_api.requests_to(CHECKOUT)]
    assert len(set(keys)) == 3
    assert len(stripe_api.requests_to(CUSTOMERS)) == 1


def test_a_plan_without_a_price_is_bad_input(named, stripe_api, plans):
    error = api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.alice, plan=plans["enterprise"],
                                                            interval="yearly"))
    assert (error.status, error.code) == (400, "no_price")
    assert "Enterprise" in error.message and "yearly" in error.message

    error = api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.alice, plan=plans["pro"],
                                                            interval="weekly"))
    assert (error.status, error.code) == (400, "invalid_interval")
    assert stripe_api.requests == []


def test_price_row_from_the_admin_wins_over_settings(named, stripe_api, plans):
    Price.objects.update_or_create(plan=plans["enterprise"], interval=Interval.YEARLY,
                                   defaults={"amount": 990, "stripe_price_id": "price_ent_y"})
    # The seeded basic monthly price has no Stripe id: the settings fill it in.

    assert stripe_gateway.price_for(plans["enterprise"], "yearly").stripe_price_id == "price_ent_y"
    assert stripe_gateway.price_for(plans["basic"], "monthly").stripe_price_id == PRICE_IDS["basic:monthly"]
    assert stripe_gateway.plan_for_stripe_price("price_ent_y") == (plans["enterprise"], "yearly")
    assert stripe_gateway.plan_for_stripe_price(PRICE_IDS["pro:yearly"]) == (plans["pro"], "yearly")
    assert stripe_gateway.plan_for_stripe_price("price_someone_elses") == (None, None)


def test_only_owners_do_billing(named, stripe_api):
    for call in (
        lambda: stripe_gateway.start_checkout(named.acme, user=named.bob, plan=named.acme.plan, interval="monthly"),
        lambda: stripe_gateway.open_portal(named.acme, user=named.bob),
    ):
        error = api_error(call)
        assert (error.status, error.code) == (403, "owner_required")

    # Another tenant's owner: that billing is not there at all.
    error = api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.carol, plan=named.acme.plan,
                                                            interval="monthly"))
    assert error.status == 404
    assert stripe_api.requests == []
    assert not Customer.objects.filter(tenant=named.acme).exclude(stripe_customer_id=None).exists()


def test_downgrade_below_usage_is_refused_before_stripe(named, stripe_api, plans):
    # Acme has two people (alice, bob); Free allows one.
    error = api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.alice, plan=plans["free"],
                                                            interval="monthly"))
    assert (error.status, error.code) == (409, "downgrade_blocked")
    assert "remove 1 first" in error.message
    assert stripe_api.requests == []


def test_portal_needs_a_customer_then_opens(named, stripe_api):
    error = api_error(lambda: stripe_gateway.open_portal(named.acme, user=named.alice))
    assert (error.status, error.code) == (409, "no_customer")

    stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")
    url = stripe_gateway.open_portal(named.acme, user=named.alice)

    assert url.startswith("https://billing.stripe.test/p/session/bps_")
    [portal] = stripe_api.requests_to(PORTAL)
    assert portal.params == {"customer": Customer.objects.get(tenant=named.acme).stripe_customer_id,
                             "return_url": "https://switchboard.test/billing/"}


def test_stripe_errors_are_502_and_keep_nothing_half_done(named, stripe_api, settings):
    stripe_api.fail_with = 500
    error = api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan,
                                                            interval="monthly"))
    assert (error.status, error.code) == (502, "stripe_unavailable")
    assert "try again" in error.message
    customer = Customer.objects.get(tenant=named.acme)
    assert customer.checkout_session_url == "" and customer.stripe_customer_id is None

    # Stripe answers again but fails at the session: the customer it created is kept, and reused next time.
    stripe_api.fail_with = None
    original = stripe_api._route

    def customers_only(path, params):
        return original(path, params) if path == CUSTOMERS else (503, stripe_api._error("api_error", "down"))

    stripe_api._route = customers_only
    assert api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan,
                                                           interval="monthly")).status == 502
    customer.refresh_from_db()
    assert customer.stripe_customer_id and customer.checkout_session_url == ""
    stripe_api._route = original
    # Stripe keeps a 5xx for its idempotency key; a few minutes later the key is a new one.
    later = timezone.now() + stripe_gateway.IDEMPOTENCY_WINDOW
    assert stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly",
                                         now=later)
    assert len(stripe_api.requests_to(CUSTOMERS)) == 2  # the refused one, then once

    # Nothing listening at all.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port}"
    error = api_error(lambda: stripe_gateway.open_portal(named.acme, user=named.alice))
    assert (error.status, error.code) == (502, "stripe_unavailable")


def test_without_stripe_keys_billing_is_offline(named, settings):
    settings.STRIPE_SECRET_KEY = ""
    assert not stripe_gateway.stripe_enabled()
    error = api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan,
                                                            interval="monthly"))
    assert (error.status, error.code) == (409, "stripe_not_configured")


def test_a_tenant_with_a_live_stripe_subscription_goes_to_the_portal(named, stripe_api):
    Subscription.objects.filter(tenant=named.acme).update(stripe_subscription_id="sub_live",
                                                          status=Subscription.Status.ACTIVE)
    error = api_error(lambda: stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan,
                                                            interval="monthly"))
    assert (error.status, error.code) == (409, "already_subscribed")

    Subscription.objects.filter(tenant=named.acme).update(status=Subscription.Status.CANCELED)
    assert stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")
