"""The only module that calls Stripe's API: customers, Checkout sessions for subscriptions, portal sessions.

A StripeClient is built per call from settings (STRIPE_SECRET_KEY, STRIPE_API_BASE for the local fake in tests);
stripe's module globals are never touched. Stripe failures become DomainError(BillingError.STRIPE_UNAVAILABLE) (502),
                                                                              never a 500.
"""
import logging
from datetime import timedelta

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import actions as audit
from core.errors import CommonError, DomainError
from core.permissions import Perm, allows
from tenants.models import Plan

from . import actions
from .errors import BillingError
from .models import Customer, Interval, Price, Subscription

logger = logging.getLogger(__name__)

S = Subscription.Status
# Stripe refuses a Checkout trial_end less than 48 hours away; a shorter remainder of the trial is not carried over.
MIN_TRIAL_END = timedelta(hours=48)
# Checkout sessions expire after 24 hours at Stripe; one younger than this is handed out again.
SESSION_REUSE = timedelta(hours=23)
IDEMPOTENCY_WINDOW = timedelta(minutes=5)
TIMEOUT_SECONDS = (5, 20)  # connect, read: a web request waits on this
NETWORK_RETRIES = 1  # safe: every POST carries an idempotency key


def stripe_enabled():
    return bool(settings.STRIPE_SECRET_KEY)


def client():
    options = {}
    if settings.STRIPE_API_BASE:
        options["base_addresses"] = {"api": settings.STRIPE_API_BASE.rstrip("/")}
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
        **options,
    )


def _unavailable(exc, doing):
    logger.warning("Stripe call failed while %s: %s: %s", doing, type(exc).__name__, exc)
    return DomainError(BillingError.STRIPE_UNAVAILABLE,
                       f"Stripe could not be reached while {doing}. Nothing was charged; please try again in a minute.")


# --- prices --------------------------------------------------------------------------------------------

def price_for(plan, interval):
    """The Price of `plan` per `interval` with its Stripe price id (from the admin-edited row, else from
    settings.STRIPE_PRICE_IDS["<plan code>:<interval>"]). A price known only from settings comes back unsaved."""
    if interval not in Interval.values:
        raise DomainError(BillingError.INVALID_INTERVAL, "The interval must be monthly or yearly.")
    price = Price.objects.filter(plan=plan, interval=interval).first()
    if price is None:
        fallback = settings.MONTHLY_PRICE if interval == Interval.MONTHLY else settings.YEARLY_PRICE
        price = Price(plan=plan, interval=interval, amount=fallback, currency=settings.BILLING_CURRENCY)
    if not price.stripe_price_id:
        price.stripe_price_id = settings.STRIPE_PRICE_IDS.get(f"{plan.code}:{interval}", "")
    if not price.stripe_price_id:
        raise DomainError(BillingError.NO_PRICE,
                          f"The {plan.name} plan has no {interval} price yet. Choose another plan "
                          "or interval, or ask the platform team to set one.",
                          {"plan": plan.code, "interval": interval})
    return price


def plan_for_stripe_price(stripe_price_id):
    """(plan, interval) that a Stripe price id stands for, or (None, None) if it is not one of ours."""

    if not stripe_price_id:
        return None, None
    price = Price.objects.select_related("plan").filter(stripe_price_id=stripe_price_id).first()
    if price is not None:
        return price.plan, price.interval
    for key, value in settings.STRIPE_PRICE_IDS.items():
        code, _, interval = key.partition(":")
        if value == stripe_price_id and interval in Interval.values:
            plan = Plan.objects.filter(code=code).first()
            if plan is not None:
                return plan, interval
    return None, None


# --- who may pay -------------------------------------------------------------------------------------

def _require_owner(tenant, user):
    role = tenant.memberships.filter(user=user).values_list("role", flat=True).first()
    if role is None:
        raise DomainError(CommonError.NOT_FOUND, "Not found.")  # another tenant's billing is not even there
    if not allows(role, Perm.BILLING_MANAGE):
        raise DomainError(BillingError.OWNER_REQUIRED,
                          f"Only an owner of {tenant.name} can change billing. Ask an owner "
                          "to choose the plan or update the card.")


def _require_stripe():
    if not stripe_enabled():
        raise DomainError(BillingError.STRIPE_NOT_CONFIGURED, "Online payment is not set up: "
                          + settings.BILLING_OFFLINE_INSTRUCTIONS)


# --- checkout and portal ------------------------------------------------------------------------------

def start_checkout(tenant, *, user, plan, interval, now=None):
    """URL of a Stripe Checkout session that subscribes `tenant` to `plan` per `interval`.

    The Customer row is locked for the whole call, so concurrent clicks queue up and the later ones get the
    session the first one opened (reused while under SESSION_REUSE old for the same plan:interval)."""
    now = now or timezone.now()
    _require_owner(tenant, user)
    _require_stripe()
    price = price_for(plan, interval)
    key = f"{plan.code}:{interval}"
    failure = None
    with transaction.atomic():
        customer, _ = Customer.objects.select_for_update().get_or_create(tenant=tenant)
        sub = Subscription.objects.select_related("plan").filter(tenant=tenant).first()
        if sub is not None and sub.stripe_subscription_id and sub.status != S.CANCELED:
            raise DomainError(BillingError.ALREADY_SUBSCRIBED,
                              "This business already has a Stripe subscription: change "
                              "the plan, card or cancel in the customer portal.")
        if sub is not None and plan != sub.plan:
            actions._check_fits(tenant, plan)  # a downgrade below current usage never reaches Stripe
        fresh = customer.checkout_created_at and now - customer.checkout_created_at < SESSION_REUSE
        if customer.checkout_session_url and customer.checkout_key == key and fresh:
            return customer.checkout_session_url

        api = client()
        try:
            if customer.checkout_session_url:
                _expire_quietly(api, customer.checkout_session_id)  # only one payable session at a time
            if not customer.stripe_customer_id:
                customer.stripe_customer_id = _create_customer(api, tenant, user, now)
                customer.save(update_fields=["stripe_customer_id"])
            session = api.v1.checkout.sessions.create(
                params=_checkout_params(tenant, customer, sub, plan, interval, price, now),
                options={"idempotency_key": f"sb-checkout-{tenant.schema_name}-{key}-"
                                            f"{customer.checkout_session_id or 'first'}-{_window(now)}"},
            )
        except stripe.StripeError as exc:
            failure = exc  # leave the block normally: a customer just created at Stripe stays stored
        else:
            customer.checkout_session_id = session.id
            customer.checkout_session_url = session.url
            customer.checkout_key = key
            customer.checkout_created_at = now
            customer.save(update_fields=["checkout_session_id", "checkout_session_url", "checkout_key",
                                         "checkout_created_at"])
            audit.record("billing.checkout_started", actor=user, target=customer, tenant=tenant,
                         after={"plan": plan.code, "interval": interval, "session": session.id})
    if failure is not None:
        raise _unavailable(failure, "opening the checkout")
    return session.url


def _window(now):
    """Idempotency keys are the same for the same request within a few minutes: if our transaction is lost
    after Stripe answered, the retry gets the same customer or session back. Not longer: Stripe replays even a
    5xx for a key, for 24 hours."""
    return int(now.timestamp() // IDEMPOTENCY_WINDOW.total_seconds())


def _create_customer(api, tenant, user, now):
    created = api.v1.customers.create(
        params={"name": tenant.name, "email": user.email,
                "metadata": {"tenant_id": str(tenant.pk), "tenant_slug": tenant.slug}},
        options={"idempotency_key": f"sb-customer-{tenant.schema_name}-{tenant.pk}-{_window(now)}"},
    )
    return created.id


def _expire_quietly(api, session_id):
    try:
        api.v1.checkout.sessions.expire(session_id)
    except stripe.StripeError as exc:  # already completed or expired: nothing left to pay there
        logger.info("Could not expire checkout session %s: %s", session_id, exc)


def _checkout_params(tenant, customer, sub, plan, interval, price, now):
    metadata = {"tenant_id": str(tenant.pk), "plan": plan.code, "interval": interval}
    subscription_data = {"metadata": metadata}
    if sub is not None and sub.status == S.TRIALING and sub.trial_ends_at and \
            sub.trial_ends_at - now > MIN_TRIAL_END:
        subscription_data["trial_end"] = int(sub.trial_ends_at.timestamp())
    return {
        "mode": "subscription",
        "customer": customer.stripe_customer_id,
        "client_reference_id": str(tenant.pk),
        "line_items": [{"price": price.stripe_price_id, "quantity": 1}],
        "metadata": metadata,
        "subscription_data": subscription_data,
        "success_url": f"{settings.SITE_URL}/billing/return/?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{settings.SITE_URL}/billing/",
    }


def open_portal(tenant, *, user):
    """URL of a Stripe Customer Portal session: change plan, card, see invoices, cancel."""
    _require_owner(tenant, user)
    _require_stripe()
    stripe_customer_id = Customer.objects.filter(tenant=tenant).values_list("stripe_customer_id", flat=True).first()
    if not stripe_customer_id:
        raise DomainError(BillingError.NO_CUSTOMER,
                          "There is nothing to manage yet: choose a plan and check out first.")
    try:
        session = client().v1.billing_portal.sessions.create(
            params={"customer": stripe_customer_id, "return_url": f"{settings.SITE_URL}/billing/"})
    except stripe.StripeError as exc:
        raise _unavailable(exc, "opening the customer portal")
    return session.url


# --- the end of a workspace ------------------------------------------------------------------------------

def cancel_at_stripe(tenant):
    """End the tenant's Stripe subscription now, before its workspace is deleted: nothing more is charged. One that
    Stripe no longer knows counts as ended. Raises DomainError stripe_unavailable (the deletion waits for the next
    run) when Stripe cannot be reached. Returns the subscription id canceled, or None when there was none."""
    sub = Subscription.objects.filter(tenant=tenant).first()
    if sub is None or not sub.stripe_subscription_id:
        return None
    if not stripe_enabled():
        logger.warning("Tenant %s has Stripe subscription %s but STRIPE_SECRET_KEY is unset: not canceled at Stripe",
                       tenant.pk, sub.stripe_subscription_id)
        return None
    try:
        client().v1.subscriptions.cancel(sub.stripe_subscription_id)
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "code", None) != "resource_missing":
            raise _unavailable(exc, "canceling the subscription")
    except stripe.StripeError as exc:
        raise _unavailable(exc, "canceling the subscription")
    with transaction.atomic():
        before = actions.snapshot(sub)
        Subscription.objects.filter(pk=sub.pk).update(status=S.CANCELED, comped=False)
        sub.status = S.CANCELED
        audit.record("billing.canceled", actor=None, target=sub, before=before,
                     after={**actions.snapshot(sub), "reason": "workspace deleted",
                            "stripe_subscription": sub.stripe_subscription_id}, tenant=tenant)
    return sub.stripe_subscription_id
