"""Stripe's webhook endpoint end to end: Stripe's real signature scheme, storage once, processing in the task
(eager here), and what each event does to the subscription. Transactional: commits are real, so "no partial
rows" is about what a real transaction leaves behind."""
import hashlib
import hmac
import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import path
from django.utils import timezone

import config.urls
from audit.models import AuditLog
from billing import entitlements, stripe_events, stripe_gateway, webhooks
from billing.models import Customer, Payment, StripeEvent, Subscription
from billing.tasks import process_stripe_event
from tenants.models import Notification, Tenant

from .stripe_fake import PRICE_IDS, WEBHOOK_SECRET, stripe_api  # noqa: F401 (fixture)

# The endpoint as billing/urls.py mounts it, whether or not that is wired yet.
urlpatterns = [path("billing/stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
               *config.urls.urlpatterns]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

URL = "/billing/stripe/webhook/"
S = Subscription.Status
_ids = iter(range(1, 10**6))


def sign(payload, secret=WEBHOOK_SECRET, timestamp=None):
    """Stripe's scheme: t=<unix time>,v1=hex(HMAC-SHA256(secret, "<t>.<payload>"))."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post(client, event, *, secret=WEBHOOK_SECRET, timestamp=None, header=None):
    payload = event if isinstance(event, str) else json.dumps(event)
    signature = header if header is not None else sign(payload, secret, timestamp)
    return client.post(URL, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


def event(type_, obj, event_id=None):
    return {"id": event_id or f"evt_test_{next(_ids)}", "object": "event", "api_version": "2026-10-28.endive",
            "created": int(time.time()), "livemode": False, "type": type_, "data": {"object": obj}}


def ts(moment):
    return int(moment.timestamp())


def subscription_object(sub_id, customer, status, price=PRICE_IDS["basic:monthly"], *, start=None, end=None,
                        cancel_at_period_end=False, trial_end=None, metadata=None):
    start = start or timezone.now()
    end = end or start + timedelta(days=30)
    # API 2025-03-31 and later: the period lives on the items.
    return {"id": sub_id, "object": "subscription", "customer": customer, "status": status,
            "cancel_at_period_end": cancel_at_period_end, "trial_end": trial_end, "metadata": metadata or {},
            "items": {"object": "list", "data": [{
                "id": f"si_{sub_id}", "object": "subscription_item", "quantity": 1,
                "price": {"id": price, "object": "price"},
                "current_period_start": ts(start), "current_period_end": ts(end)}]}}


def invoice_object(invoice_id, customer, sub_id, *, amount=2900, currency="usd", start=None, end=None,
                   next_payment_attempt=None, billing_reason="subscription_cycle"):
    start = start or timezone.now()
    end = end or start + timedelta(days=30)
    return {"id": invoice_id, "object": "invoice", "customer": customer, "currency": currency,
            "amount_due": amount, "amount_paid": amount, "number": f"SB-{invoice_id[-4:]}",
            "billing_reason": billing_reason, "attempt_count": 1, "next_payment_attempt": next_payment_attempt,
            "hosted_invoice_url": f"https://invoice.stripe.test/i/{invoice_id}",
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": sub_id, "metadata": {}}},
            "period_start": ts(start - timedelta(days=30)), "period_end": ts(start),
            "status_transitions": {"paid_at": ts(timezone.now())},
            "lines": {"object": "list", "data": [{"id": f"il_{invoice_id}", "object": "line_item",
                                                  "period": {"start": ts(start), "end": ts(end)}}]}}


@pytest.fixture
def linked(named, stripe_api):
    """Acme has checked out already: Stripe customer cus_acme, subscription sub_acme."""
    Customer.objects.filter(tenant=named.acme).update(stripe_customer_id="cus_acme")
    Subscription.objects.filter(tenant=named.acme).update(stripe_subscription_id="sub_acme")
    return named


def subscription(tenant):
    return Subscription.objects.select_related("plan").get(tenant=tenant)


# --- verification ----------------------------------------------------------------------------------------

def test_bad_signatures_are_refused_and_nothing_is_stored(client, linked):
    paid = event("invoice.paid", invoice_object("in_1", "cus_acme", "sub_acme"))
    payload = json.dumps(paid)

    for response in (
        post(client, paid, secret="whsec_someone_else"),
        post(client, payload, header=sign(payload).replace("v1=", "v1=00")),
        post(client, payload.replace("2900", "1"), header=sign(payload)),  # tampered after signing
        post(client, paid, header=""),
        post(client, paid, header="garbage"),
    ):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_signature"
    assert StripeEvent.objects.count() == 0 and Payment.objects.count() == 0


def test_a_stale_signature_is_refused(client, linked):
    paid = event("invoice.paid", invoice_object("in_1", "cus_acme", "sub_acme"))

    response = post(client, paid, timestamp=int(time.time()) - 301)

    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_signature"
    assert StripeEvent.objects.count() == 0
    assert post(client, paid, timestamp=int(time.time()) - 240).status_code == 200  # within Stripe's 300 s


def test_a_signed_body_that_is_not_an_event_is_refused(client, linked):
    for body in ("{not json", "[1, 2]", json.dumps({"object": "event"})):
        response = post(client, body)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_payload"
    assert StripeEvent.objects.count() == 0


def test_without_a_webhook_secret_stripe_is_told_to_retry_later(client, linked, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = post(client, event("invoice.paid", invoice_object("in_1", "cus_acme", "sub_acme")))
    assert response.status_code == 503
    assert client.get(URL).status_code == 405


# --- storage once, processing once -----------------------------------------------------------------------------

def test_the_same_event_five_times_changes_state_once(client, linked):
    Subscription.objects.filter(tenant=linked.acme).update(status=S.PAST_DUE)
    paid = event("invoice.paid", invoice_object("in_five", "cus_acme", "sub_acme"))

    statuses = [post(client, paid) for _ in range(5)]

    assert [r.status_code for r in statuses] == [200] * 5
    assert [r.json()["data"]["status"] for r in statuses] == ["processed"] + ["duplicate"] * 4
    assert StripeEvent.objects.count() == 1
    assert Payment.objects.count() == 1
    assert AuditLog.objects.filter(action="billing.stripe_invoice_paid").count() == 1
    assert Notification.objects.filter(tenant=linked.acme, kind="payment_received").count() == 1
    assert subscription(linked.acme).status == S.ACTIVE


def test_an_event_for_an_unknown_customer_is_stored_and_flagged(linked):
    paid = event("invoice.paid", invoice_object("in_x", "cus_nobody", "sub_nobody"))

    response = post(Client(enforce_csrf_checks=True), paid)  # Stripe sends no CSRF token

    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id=paid["id"])
    assert stored.unknown_customer and stored.processed_at and stored.error == ""
    assert stored.payload == paid
    assert Payment.objects.count() == 0


def test_event_types_we_do_not_handle_are_stored_and_done(client, linked):
    response = post(client, event("customer.updated", {"id": "cus_acme", "object": "customer"}))
    assert response.status_code == 200
    assert StripeEvent.objects.get().processed_at is not None


def test_a_processing_error_is_5xx_leaves_no_partial_rows_and_a_replay_processes_it(client, linked, monkeypatch):
    Subscription.objects.filter(tenant=linked.acme).update(status=S.READ_ONLY, read_only_since=timezone.now())
    paid = event("invoice.paid", invoice_object("in_broken", "cus_acme", "sub_acme"))

    def broken(*args, **kwargs):
        raise RuntimeError("notification service exploded")

    # Fails half-way: after the Payment row and the subscription change, before the notification.
    monkeypatch.setattr(stripe_events, "tell_tenant", broken)
    response = post(client, paid)

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "processing_failed"
    assert Payment.objects.count() == 0
    assert subscription(linked.acme).status == S.READ_ONLY
    assert not AuditLog.objects.filter(action="billing.stripe_invoice_paid").exists()
    stored = StripeEvent.objects.get(event_id=paid["id"])
    assert stored.processed_at is None and "notification service exploded" in stored.error

    monkeypatch.undo()
    response = post(client, paid)  # Stripe delivers it again

    assert response.status_code == 200 and response.json()["data"]["status"] == "processed"
    stored.refresh_from_db()
    assert stored.processed_at and stored.error == ""
    assert Payment.objects.count() == 1
    assert subscription(linked.acme).status == S.ACTIVE


@pytest.fixture
def worker_mode(monkeypatch):
    """Tasks go to a worker instead of running in the request: returns the event pks sent."""
    conf = process_stripe_event.app.conf
    eager, queued = conf.task_always_eager, []
    conf.task_always_eager = False
    monkeypatch.setattr(process_stripe_event, "delay", lambda pk: queued.append(pk))
    yield queued
    conf.task_always_eager = eager


def test_with_a_worker_the_event_is_queued_on_commit_and_a_redelivery_queues_it_again(client, linked, worker_mode):
    queued = worker_mode
    paid = event("invoice.paid", invoice_object("in_q", "cus_acme", "sub_acme"))

    first, second = post(client, paid), post(client, paid)

    assert [first.status_code, second.status_code] == [200, 200]
    assert first.json()["data"]["status"] == "queued"
    stored = StripeEvent.objects.get()
    assert queued == [stored.pk, stored.pk] and Payment.objects.count() == 0

    assert stripe_events.process_event(stored.pk) == "paid"
    assert stripe_events.process_event(stored.pk) == "duplicate"  # the second queued copy
    assert Payment.objects.count() == 1
    assert post(client, paid).json()["data"]["status"] == "duplicate" and len(queued) == 2


def test_in_a_worker_a_failure_is_retried_with_backoff(linked, monkeypatch):
    stored = StripeEvent.objects.create(event_id="evt_retry", type="invoice.paid",
                                        payload=event("invoice.paid", invoice_object("in_r", "cus_acme", "sub_acme")))
    monkeypatch.setattr(stripe_events, "tell_tenant", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("down")))
    retries = []

    def retry(exc=None, countdown=None, **kwargs):
        retries.append((exc, countdown))
        return RuntimeError("retry scheduled")

    monkeypatch.setattr(process_stripe_event, "retry", retry)
    process_stripe_event.push_request(is_eager=False, called_directly=False, retries=3)
    try:
        with pytest.raises(RuntimeError, match="retry scheduled"):
            process_stripe_event.run(stored.pk)
    finally:
        process_stripe_event.pop_request()

    [(exc, countdown)] = retries
    assert str(exc) == "down" and 0 <= countdown <= 3600
    stored.refresh_from_db()
    assert stored.processed_at is None and "down" in stored.error and Payment.objects.count() == 0


# --- what the events do ------------------------------------------------------------------------------------

def test_checkout_to_paid_subscription_end_to_end(client, named, stripe_api, plans):
    url = stripe_gateway.start_checkout(named.acme, user=named.alice, plan=plans["pro"], interval="yearly")
    customer = Customer.objects.get(tenant=named.acme)
    session_id = url.rsplit("/", 1)[1]
    start = timezone.now().replace(microsecond=0)
    end = start + timedelta(days=365)

    completed = event("checkout.session.completed", {
        "id": session_id, "object": "checkout.session", "mode": "subscription", "status": "complete",
        "customer": customer.stripe_customer_id, "subscription": "sub_new", "payment_status": "paid",
        "client_reference_id": str(named.acme.pk),
        "metadata": {"tenant_id": str(named.acme.pk), "plan": "pro", "interval": "yearly"}})
    assert post(client, completed).status_code == 200
    sub = subscription(named.acme)
    assert sub.stripe_subscription_id == "sub_new" and sub.status == S.TRIALING
    customer.refresh_from_db()
    assert customer.checkout_session_url == ""  # never handed out again

    updated = event("customer.subscription.updated", subscription_object(
        "sub_new", customer.stripe_customer_id, "active", PRICE_IDS["pro:yearly"], start=start, end=end))
    assert post(client, updated).status_code == 200
    sub = subscription(named.acme)
    assert (sub.status, sub.plan.code, sub.interval) == (S.ACTIVE, "pro", "yearly")
    assert Tenant.objects.get(pk=named.acme.pk).plan.code == "pro"  # limits follow at once
    assert entitlements.limits_for(Tenant.objects.get(pk=named.acme.pk))["max_users"] == plans["pro"].max_users

    paid = event("invoice.paid", invoice_object("in_first", customer.stripe_customer_id, "sub_new", amount=99000,
                                                start=start, end=end, billing_reason="subscription_create"))
    assert post(client, paid).status_code == 200

    sub = subscription(named.acme)
    assert sub.status == S.ACTIVE
    assert (sub.current_period_start, sub.current_period_end) == (start, end)
    payment = Payment.objects.get(tenant=named.acme)
    assert (payment.source, payment.status, payment.amount, payment.currency) == ("stripe", "paid", Decimal("990.00"),
                                                                                  "usd")
    assert payment.receipt_url == "https://invoice.stripe.test/i/in_first"
    assert (payment.period_start, payment.period_end) == (start, end)
    assert StripeEvent.objects.filter(processed_at__isnull=False).count() == 3


def test_events_in_another_order_find_the_tenant_from_metadata(client, named, stripe_api):
    """customer.subscription.created can arrive before checkout.session.completed."""
    stripe_gateway.start_checkout(named.acme, user=named.alice, plan=named.acme.plan, interval="monthly")
    customer = Customer.objects.get(tenant=named.acme)
    trial_end = ts(timezone.now() + timedelta(days=6))
    created = event("customer.subscription.created", subscription_object(
        "sub_early", customer.stripe_customer_id, "trialing", trial_end=trial_end,
        metadata={"tenant_id": str(named.acme.pk)}))

    assert post(client, created).status_code == 200

    sub = subscription(named.acme)
    assert (sub.stripe_subscription_id, sub.status) == ("sub_early", S.TRIALING)
    assert ts(sub.trial_ends_at) == trial_end


def test_a_failed_renewal_is_past_due_then_read_only_when_stripe_gives_up(client, linked):
    Subscription.objects.filter(tenant=linked.acme).update(status=S.ACTIVE)
    retry_at = ts(timezone.now() + timedelta(days=3))

    response = post(client, event("invoice.payment_failed", invoice_object(
        "in_fail", "cus_acme", "sub_acme", next_payment_attempt=retry_at)))

    assert response.status_code == 200
    assert subscription(linked.acme).status == S.PAST_DUE
    payment = Payment.objects.get()
    assert (payment.status, payment.amount, payment.stripe_invoice_id) == ("failed", Decimal("29.00"), "in_fail")
    assert entitlements.access_for(Tenant.objects.get(pk=linked.acme.pk)).can_write  # Stripe is still retrying

    post(client, event("invoice.payment_failed", invoice_object("in_fail", "cus_acme", "sub_acme")))

    sub = subscription(linked.acme)
    assert sub.status == S.READ_ONLY and sub.read_only_since is not None
    assert Payment.objects.count() == 1  # one row per invoice
    assert AuditLog.objects.filter(action="billing.read_only.payment_failed").count() == 1


@pytest.mark.parametrize("status", [S.READ_ONLY, S.SUSPENDED, S.PAST_DUE])
def test_paying_restores_a_locked_tenant_at_once(client, linked, status):
    long_ago = timezone.now() - timedelta(days=20)
    Subscription.objects.filter(tenant=linked.acme).update(status=status, read_only_since=long_ago,
                                                           suspended_at=long_ago if status == S.SUSPENDED else None)
    post(client, event("invoice.payment_failed", invoice_object("in_late", "cus_acme", "sub_acme")))

    response = post(client, event("invoice.paid", invoice_object("in_late", "cus_acme", "sub_acme")))

    assert response.status_code == 200
    sub = subscription(linked.acme)
    assert (sub.status, sub.read_only_since, sub.suspended_at) == (S.ACTIVE, None, None)
    assert entitlements.access_for(Tenant.objects.get(pk=linked.acme.pk)).can_write
    assert Payment.objects.get().status == "paid"  # the failed attempt, now paid
    assert Notification.objects.filter(tenant=linked.acme, kind="payment_received").exists()


def test_stripe_subscription_states_map_to_ours(client, linked, plans):
    def send(status, type_="customer.subscription.updated", **kwargs):
        assert post(client, event(type_, subscription_object("sub_acme", "cus_acme", status, **kwargs))).status_code \
            == 200
        return subscription(linked.acme)

    assert send("active", cancel_at_period_end=True).cancel_at_period_end
    assert send("active").cancel_at_period_end is False
    assert send("past_due").status == S.PAST_DUE
    assert send("active").status == S.ACTIVE
    sub = send("unpaid")
    assert sub.status == S.READ_ONLY and sub.read_only_since is not None
    assert send("active").status == S.ACTIVE
    assert send("incomplete_expired").status == S.READ_ONLY
    sub = send("canceled", type_="customer.subscription.deleted")
    assert sub.status == S.CANCELED and sub.read_only_since is not None
    assert AuditLog.objects.filter(action="billing.canceled").count() == 1

    # The end of an older subscription the tenant has since replaced changes nothing.
    Subscription.objects.filter(tenant=linked.acme).update(stripe_subscription_id="sub_newer", status=S.ACTIVE,
                                                           read_only_since=None)
    post(client, event("customer.subscription.deleted", subscription_object("sub_acme", "cus_acme", "canceled")))
    assert subscription(linked.acme).status == S.ACTIVE


def test_a_plan_change_in_the_portal_moves_the_limits(client, linked, plans):
    post(client, event("customer.subscription.updated", subscription_object(
        "sub_acme", "cus_acme", "active", PRICE_IDS["free:monthly"])))

    sub = subscription(linked.acme)
    assert sub.plan.code == "free" and Tenant.objects.get(pk=linked.acme.pk).plan.code == "free"
    # Acme has two people and Free allows one: it is told what to remove, and the audit row says so.
    notice = Notification.objects.filter(tenant=linked.acme, kind="plan_changed").get()
    assert "2 team members in use, 1 allowed" in notice.message
    row = AuditLog.objects.get(action="billing.stripe_subscription_synced")
    assert row.after["over_limits"] == {"max_users": {"in_use": 2, "allowed": 1}}


def test_an_invoice_of_a_replaced_subscription_is_history_only(client, linked):
    Subscription.objects.filter(tenant=linked.acme).update(status=S.CANCELED, read_only_since=timezone.now())

    response = post(client, event("invoice.paid", invoice_object("in_old", "cus_acme", "sub_older")))

    assert response.status_code == 200
    assert Payment.objects.get().stripe_invoice_id == "in_old"
    sub = subscription(linked.acme)
    assert (sub.status, sub.stripe_subscription_id) == (S.CANCELED, "sub_acme")


# --- events out of order (Stripe guarantees no order and retries for days) --------------------------------------

def at(seconds_ago):
    return int(time.time()) - seconds_ago


def aged(type_, obj, created):
    return {**event(type_, obj), "created": created}


def test_a_final_failure_of_an_invoice_paid_since_changes_nothing(client, linked):
    Subscription.objects.filter(tenant=linked.acme).update(status=S.ACTIVE)
    paid = aged("invoice.paid", invoice_object("in_1", "cus_acme", "sub_acme"), at(60))
    failed = aged("invoice.payment_failed", invoice_object("in_1", "cus_acme", "sub_acme"), at(120))  # earlier
    assert post(client, paid).status_code == 200
    assert post(client, failed).status_code == 200  # delivered after, created before

    sub = subscription(linked.acme)
    assert sub.status == S.ACTIVE and sub.read_only_since is None
    assert entitlements.access_for(Tenant.objects.get(pk=linked.acme.pk)).can_write
    assert Payment.objects.get(stripe_invoice_id="in_1").status == "paid"
    assert not Notification.objects.filter(tenant=linked.acme, kind__startswith="payment_failed").exists()
    assert StripeEvent.objects.get(event_id=failed["id"]).processed_at is not None


def test_an_older_subscription_update_does_not_undo_a_newer_one(client, linked):
    newer = aged("customer.subscription.updated", subscription_object("sub_acme", "cus_acme", "active"), at(30))
    older = aged("customer.subscription.updated", subscription_object("sub_acme", "cus_acme", "past_due"), at(90))
    post(client, newer)
    post(client, older)

    sub = subscription(linked.acme)
    assert sub.status == S.ACTIVE
    assert AuditLog.objects.filter(action="billing.stripe_event_out_of_order", tenant=linked.acme).count() == 1
    assert not AuditLog.objects.filter(action="billing.past_due").exists()


def test_an_older_failure_of_another_invoice_does_not_lock_a_tenant_that_paid_since(client, linked):
    Subscription.objects.filter(tenant=linked.acme).update(status=S.ACTIVE)
    post(client, aged("invoice.paid", invoice_object("in_new", "cus_acme", "sub_acme"), at(10)))
    post(client, aged("invoice.payment_failed", invoice_object("in_old", "cus_acme", "sub_acme"), at(600)))

    assert subscription(linked.acme).status == S.ACTIVE
    assert Payment.objects.get(stripe_invoice_id="in_old").status == "failed"  # history keeps it


def test_events_in_order_still_apply(client, linked):
    Subscription.objects.filter(tenant=linked.acme).update(status=S.ACTIVE)
    post(client, aged("customer.subscription.updated", subscription_object("sub_acme", "cus_acme", "active"), at(90)))
    post(client, aged("invoice.payment_failed", invoice_object("in_2", "cus_acme", "sub_acme",
                                                               next_payment_attempt=at(-3600)), at(30)))
    assert subscription(linked.acme).status == S.PAST_DUE
