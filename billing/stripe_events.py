"""Stripe events: stored once as they arrive (receive), then applied to billing by process_stripe_event.

Each event is processed in one transaction with its StripeEvent row locked: either every change it makes is
committed together with `processed_at`, or none is and the error text is stored instead (in its own
transaction) for the retry. Handlers read the event payload only; nothing here calls Stripe.
"""
import logging
import traceback
from datetime import UTC, datetime
from decimal import Decimal

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import transaction
from django.utils import timezone

from audit import actions as audit
from tenants.models import Tenant

from . import actions, entitlements
from .models import Customer, Payment, StripeEvent, Subscription
from .notify import tell_tenant
from .stripe_gateway import plan_for_stripe_price

logger = logging.getLogger(__name__)

S = Subscription.Status
# Currencies Stripe counts in whole units rather than cents (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf",
                "xof", "xpf"}


class UnknownCustomer(Exception):
    """The event names no tenant of ours: stored and flagged, not an error."""


def receive(event_id, event_type, payload):
    """A verified event from Stripe's webhook: stored once, processed by the worker once the row commits.
    Returns the stored event; one already processed (a redelivery) is returned as it is, queued again if it was
    stored but never processed."""
    with transaction.atomic():
        event, _ = StripeEvent.objects.get_or_create(event_id=event_id,
                                                     defaults={"type": event_type, "payload": payload})
        if event.processed_at is None:
            transaction.on_commit(lambda: process_stripe_event.delay(event.pk))
    return event


@shared_task(name="billing.tasks.process_stripe_event", bind=True, acks_late=True, max_retries=12)
def process_stripe_event(self, event_pk):
    """Apply a stored Stripe event (billing.stripe_events), retried with exponential backoff while it fails.

    Each attempt is all-or-nothing and stores its error on the StripeEvent. Run eagerly (inside the webhook
    request, or in tests) it does not retry in-process: the error propagates, the webhook answers 500 and
    Stripe delivers the event again."""
    try:
        return process_event(event_pk)
    except Exception as exc:
        if self.request.is_eager or self.request.called_directly:
            raise
        countdown = get_exponential_backoff_interval(factor=30, retries=self.request.retries, maximum=3600,
                                                     full_jitter=True)
        raise self.retry(exc=exc, countdown=countdown)


def process_event(event_pk):
    """Apply one stored event once. Returns what happened; raises (after storing the error) if it failed."""
    now = timezone.now()
    try:
        with transaction.atomic():
            try:
                event = StripeEvent.objects.select_for_update().get(pk=event_pk)
            except StripeEvent.DoesNotExist:
                logger.warning("Stripe event #%s is gone; nothing to process", event_pk)
                return "missing"
            if event.processed_at is not None:
                return "duplicate"
            handler = HANDLERS.get(event.type)
            outcome = "ignored"
            if handler is not None:
                try:
                    outcome = handler(_object_of(event.payload), event.type, now,
                                      _ts(event.payload.get("created"))) or "processed"
                except UnknownCustomer:
                    event.unknown_customer = True
                    outcome = "unknown_customer"
                    logger.warning("Stripe event %s (%s) is for no tenant of ours", event.event_id, event.type)
            event.processed_at = now
            event.error = ""
            event.save(update_fields=["processed_at", "error", "unknown_customer"])
            return outcome
    except Exception as exc:
        # Everything the handler did is rolled back; the reason is kept for operators and the retry.
        StripeEvent.objects.filter(pk=event_pk).update(error=_describe(exc))
        raise


def _describe(exc):
    text = "".join(traceback.format_exception(exc))
    return text[-4000:]


# --- reading Stripe objects (tolerant of API versions: fields moved between 2024 and 2025 versions) ----

def _object_of(payload):
    return ((payload or {}).get("data") or {}).get("object") or {}


def _id(value):
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _ts(value):
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _money(minor_units, currency):
    amount = Decimal(int(minor_units or 0))
    return amount if currency.lower() in ZERO_DECIMAL else (amount / 100).quantize(Decimal("0.01"))


def _first_item(subscription):
    items = ((subscription.get("items") or {}).get("data")) or []
    return items[0] if items else {}


def _subscription_price_id(subscription):
    return _id(_first_item(subscription).get("price"))


def _subscription_period(subscription):
    item = _first_item(subscription)  # since API 2025-03-31 the period lives on the items
    start = subscription.get("current_period_start") or item.get("current_period_start")
    end = subscription.get("current_period_end") or item.get("current_period_end")
    return _ts(start), _ts(end)


def _invoice_subscription_details(invoice):
    return ((invoice.get("parent") or {}).get("subscription_details")) or invoice.get("subscription_details") or {}


def _invoice_subscription_id(invoice):
    return _id(invoice.get("subscription")) or _id(_invoice_subscription_details(invoice).get("subscription"))


def _invoice_period(invoice):
    lines = ((invoice.get("lines") or {}).get("data")) or []
    period = (lines[0].get("period") or {}) if lines else {}
    # A subscription invoice's own period_start/end is the period before; its line carries the service period.
    return _ts(period.get("start") or invoice.get("period_start")), _ts(period.get("end") or invoice.get("period_end"))


# --- finding the tenant -----------------------------------------------------------------------------------

def _tenant_for(*, customer_id=None, subscription_id=None, metadata=None, tenant_id=None):
    """Our tenant for a Stripe object, by the ids we stored, else by the tenant id we put in its metadata."""
    if subscription_id:
        tenant = Tenant.objects.filter(subscription__stripe_subscription_id=subscription_id).first()
        if tenant:
            return tenant
    if customer_id:
        tenant = Tenant.objects.filter(billing_customer__stripe_customer_id=customer_id).first()
        if tenant:
            return tenant
    tenant_id = tenant_id or (metadata or {}).get("tenant_id")
    if tenant_id and str(tenant_id).isdigit():
        return Tenant.objects.filter(pk=int(tenant_id)).first()
    return None


def _link_customer(tenant, stripe_customer_id):
    if not stripe_customer_id:
        return None
    customer, _ = Customer.objects.select_for_update().get_or_create(tenant=tenant)
    if not customer.stripe_customer_id:
        if Customer.objects.filter(stripe_customer_id=stripe_customer_id).exclude(pk=customer.pk).exists():
            logger.warning("Stripe customer %s already belongs to another tenant; not linking it to %s",
                           stripe_customer_id, tenant)
            return customer
        customer.stripe_customer_id = stripe_customer_id
        customer.save(update_fields=["stripe_customer_id"])
    elif customer.stripe_customer_id != stripe_customer_id:
        logger.warning("Tenant %s has Stripe customer %s, event names %s: keeping ours", tenant,
                       customer.stripe_customer_id, stripe_customer_id)
    return customer


def _link_subscription(sub, stripe_subscription_id):
    if not stripe_subscription_id or sub.stripe_subscription_id == stripe_subscription_id:
        return
    if Subscription.objects.filter(stripe_subscription_id=stripe_subscription_id).exclude(pk=sub.pk).exists():
        logger.warning("Stripe subscription %s already belongs to another tenant", stripe_subscription_id)
        return
    sub.stripe_subscription_id = stripe_subscription_id


def _state(sub):
    return {**actions.snapshot(sub), "stripe_subscription_id": sub.stripe_subscription_id,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "current_period_start": sub.current_period_start.isoformat() if sub.current_period_start else None,
            "read_only_since": sub.read_only_since.isoformat() if sub.read_only_since else None,
            "suspended_at": sub.suspended_at.isoformat() if sub.suspended_at else None}


# --- handlers: (Stripe object, event type, now, when the event was created) -> outcome -------------------------


def _out_of_order(sub, at):
    """An event older than the last one that moved this subscription's state: it must not undo it."""
    return at is not None and sub.stripe_state_at is not None and at < sub.stripe_state_at


def _moved(sub, at):
    if at is not None and (sub.stripe_state_at is None or at > sub.stripe_state_at):
        sub.stripe_state_at = at

def on_checkout_completed(session, event_type, now, at=None):
    if session.get("mode") not in (None, "subscription"):
        return "ignored"
    tenant = _tenant_for(customer_id=_id(session.get("customer")), metadata=session.get("metadata"),
                         tenant_id=session.get("client_reference_id"))
    if tenant is None:
        raise UnknownCustomer()
    customer = _link_customer(tenant, _id(session.get("customer")))
    if customer is not None and customer.checkout_session_id == session.get("id"):
        # Paid: this session must not be handed out again. Its id stays, so the next one gets a new key.
        customer.checkout_session_url, customer.checkout_key, customer.checkout_created_at = "", "", None
        customer.save(update_fields=["checkout_session_url", "checkout_key", "checkout_created_at"])
    sub = actions._locked(tenant)
    before = _state(sub)
    stripe_subscription_id = _id(session.get("subscription"))
    if stripe_subscription_id and sub.stripe_subscription_id != stripe_subscription_id:
        # A completed checkout is a new subscription, even after an older one was canceled.
        sub.stripe_subscription_id = None
        _link_subscription(sub, stripe_subscription_id)
    sub.save()
    audit.record("billing.stripe_checkout_completed", actor=None, target=sub, before=before,
                 after={**_state(sub), "checkout_session": session.get("id")}, tenant=tenant)
    return "linked"


def on_subscription_changed(stripe_sub, event_type, now, at=None):
    stripe_subscription_id = stripe_sub.get("id")
    tenant = _tenant_for(subscription_id=stripe_subscription_id, customer_id=_id(stripe_sub.get("customer")),
                         metadata=stripe_sub.get("metadata"))
    if tenant is None:
        raise UnknownCustomer()
    status = "canceled" if event_type == "customer.subscription.deleted" else stripe_sub.get("status")
    _link_customer(tenant, _id(stripe_sub.get("customer")))
    sub = actions._locked(tenant)
    if sub.stripe_subscription_id and sub.stripe_subscription_id != stripe_subscription_id:
        if status not in ("trialing", "active", "past_due"):
            return "stale_subscription"  # the end of a subscription this tenant has since replaced
        sub.stripe_subscription_id = None  # a live new subscription replaces the old one
    if _out_of_order(sub, at):
        audit.record("billing.stripe_event_out_of_order", actor=None, target=sub, tenant=tenant,
                     after={"event": event_type, "stripe_status": status, "created": at.isoformat(),
                            "applied_up_to": sub.stripe_state_at.isoformat()})
        return "out_of_order"
    _moved(sub, at)
    before = _state(sub)
    _link_subscription(sub, stripe_subscription_id)

    # Facts Stripe owns: plan (limits follow at once), interval, period, cancellation at period end, trial end.
    over = []
    plan, interval = plan_for_stripe_price(_subscription_price_id(stripe_sub))
    if plan is not None and plan != sub.plan:
        # Already changed at Stripe (the portal): refusing here would only make the two disagree. Tell the
        # tenant what is over the new limits instead.
        over = entitlements.over_limits(tenant, plan)
        actions._set_plan(sub, plan)
    if interval:
        sub.interval = interval
    start, end = _subscription_period(stripe_sub)
    if end:
        sub.current_period_start, sub.current_period_end = start, end
    sub.cancel_at_period_end = bool(stripe_sub.get("cancel_at_period_end"))
    if status == "trialing" and stripe_sub.get("trial_end"):
        sub.trial_ends_at = _ts(stripe_sub["trial_end"])
        Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=sub.trial_ends_at)

    # Status: the ones with their own action (audited, tenant told) go through billing.actions below.
    if status in ("trialing", "active"):
        if sub.status != status:
            sub.status = status
            actions._restore(sub)
    elif status == "past_due" and sub.status == S.TRIALING:
        sub.status = S.PAST_DUE
    sub.save()
    after = _state(sub)
    if after != before:
        audit.record("billing.stripe_subscription_synced", actor=None, target=sub, before=before,
                     after={**after, "stripe_status": status,
                            "over_limits": {limit: {"in_use": n, "allowed": allowed}
                                            for limit, _, n, allowed in over}},
                     tenant=tenant)
    if before["plan"] != after["plan"]:
        message = f"Your plan is now {sub.plan.name}."
        if over:
            message += " You are over its limits: " + "; ".join(
                f"{n} {noun}s in use, {allowed} allowed" for _, noun, n, allowed in over) + \
                ". Remove the extra ones, or new ones will be refused."
        tell_tenant(tenant, "plan_changed", message)

    if status == "past_due" and sub.status == S.ACTIVE:
        actions.mark_payment_failed(tenant, now, final=False)
    elif status in ("unpaid", "incomplete_expired"):
        actions._make_read_only(sub, now, "payment_failed")  # the grace period starts
    elif status == "paused":
        actions._make_read_only(sub, now, "trial_expired")  # a trial that ended without a payment method
    elif status == "canceled" and sub.status != S.CANCELED:
        actions.cancel_subscription(tenant, acting_user=None, now=now)
    return status or "processed"


def on_invoice_paid(invoice, event_type, now, at=None):
    tenant, sub, stripe_subscription_id = _invoice_tenant(invoice)
    currency = (invoice.get("currency") or "usd").lower()
    amount = _money(invoice.get("amount_paid"), currency)
    period_start, period_end = _invoice_period(invoice)
    before = _state(sub)
    payment = _record_invoice(invoice, tenant, Payment.Status.PAID, amount, currency, period_start, period_end, now)

    # Only an invoice of the tenant's current subscription moves its state; others are just history.
    current = bool(stripe_subscription_id) and sub.stripe_subscription_id == stripe_subscription_id
    # A zero invoice at the start of a Stripe trial is not a payment for service; an invoice for a canceled
    # subscription restores only when it is the first of a new one.
    activates = current and not _out_of_order(sub, at) and (amount > 0 or sub.status != S.TRIALING) and (
        sub.status != S.CANCELED or invoice.get("billing_reason") == "subscription_create")
    was_locked = sub.status in (S.PAST_DUE, S.READ_ONLY, S.SUSPENDED, S.CANCELED)
    if activates:
        _moved(sub, at)
        sub.status = S.ACTIVE
        actions._restore(sub)  # paying restores read-only and suspended tenants at once
        if period_end:
            sub.current_period_start, sub.current_period_end = period_start, period_end
        sub.save()
    audit.record("billing.stripe_invoice_paid", actor=None, target=sub, before=before,
                 after={**_state(sub), "payment_id": payment.pk, "amount": str(amount), "currency": currency,
                        "invoice": invoice.get("id")}, tenant=tenant)
    if activates and was_locked:
        tell_tenant(tenant, "payment_received", f"Payment of {amount} {currency.upper()} received: {tenant.name} "
                    "is fully active again.", subject=f"{tenant.name} is active again")
    elif amount > 0:
        until = f" Your {sub.plan.name} subscription runs until {sub.current_period_end:%d %b %Y}." \
            if sub.current_period_end else ""
        tell_tenant(tenant, "payment_received", f"Payment of {amount} {currency.upper()} received.{until}")
    return "paid"


def on_invoice_payment_failed(invoice, event_type, now, at=None):
    tenant, sub, stripe_subscription_id = _invoice_tenant(invoice)
    currency = (invoice.get("currency") or "usd").lower()
    amount = _money(invoice.get("amount_due"), currency)
    period_start, period_end = _invoice_period(invoice)
    payment = _record_invoice(invoice, tenant, Payment.Status.FAILED, amount, currency, period_start, period_end,
                              now)
    final = invoice.get("next_payment_attempt") is None  # Stripe has given up retrying
    audit.record("billing.stripe_invoice_failed", actor=None, target=sub, before=None,
                 after={"payment_id": payment.pk, "invoice": invoice.get("id"), "final": final,
                        "attempt_count": invoice.get("attempt_count")}, tenant=tenant)
    if payment.status == Payment.Status.PAID:
        return "already_paid"  # a failed attempt of an invoice paid since: Stripe delivered the news late
    if _out_of_order(sub, at):
        return "out_of_order"
    if stripe_subscription_id and sub.stripe_subscription_id == stripe_subscription_id:
        _moved(sub, at)
        sub.save(update_fields=["stripe_state_at", "updated_at"])
        actions.mark_payment_failed(tenant, now, final=final)
    return "payment_failed_final" if final else "payment_failed"


def _invoice_tenant(invoice):
    stripe_subscription_id = _invoice_subscription_id(invoice)
    details = _invoice_subscription_details(invoice)
    tenant = _tenant_for(subscription_id=stripe_subscription_id, customer_id=_id(invoice.get("customer")),
                         metadata=details.get("metadata") or invoice.get("metadata"))
    if tenant is None:
        raise UnknownCustomer()
    _link_customer(tenant, _id(invoice.get("customer")))
    sub = actions._locked(tenant)
    if stripe_subscription_id and not sub.stripe_subscription_id:
        _link_subscription(sub, stripe_subscription_id)
        sub.save(update_fields=["stripe_subscription_id", "updated_at"])
    return tenant, sub, stripe_subscription_id


def _record_invoice(invoice, tenant, status, amount, currency, period_start, period_end, now):
    """One Payment per Stripe invoice: a failed attempt later paid becomes paid; a paid one stays paid."""
    payment = Payment.objects.select_for_update().filter(stripe_invoice_id=invoice["id"]).first()
    paid_at = _ts(((invoice.get("status_transitions") or {}).get("paid_at"))) if status == Payment.Status.PAID \
        else None
    values = dict(status=status, amount=amount, currency=currency, receipt_url=invoice.get("hosted_invoice_url") or "",
                  period_start=period_start, period_end=period_end, reference=invoice.get("number") or "")
    if payment is None:
        return Payment.objects.create(tenant=tenant, source=Payment.Source.STRIPE, stripe_invoice_id=invoice["id"],
                                      created_at=paid_at or now, **values)
    if payment.status == Payment.Status.PAID and status != Payment.Status.PAID:
        return payment
    for name, value in values.items():
        setattr(payment, name, value)
    payment.save()
    return payment


HANDLERS = {
    "checkout.session.completed": on_checkout_completed,
    "customer.subscription.created": on_subscription_changed,
    "customer.subscription.updated": on_subscription_changed,
    "customer.subscription.deleted": on_subscription_changed,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_failed": on_invoice_payment_failed,
}
