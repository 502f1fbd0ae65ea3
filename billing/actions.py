"""State changes of subscriptions and payments. One transaction each, audited, tenants told on commit.

Time is always passed in (`now`), so the billing clock can be driven by tests.
"""
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import actions as audit
from core.errors import DomainError
from tenants.models import Plan, Tenant

from . import entitlements
from .errors import BillingError
from .models import Customer, Interval, Payment, Subscription
from .notify import tell_tenant

S = Subscription.Status


def snapshot(sub):
    return {
        "status": sub.status,
        "plan": sub.plan.code,
        "interval": sub.interval,
        "trial_ends_at": sub.trial_ends_at.isoformat() if sub.trial_ends_at else None,
        "current_period_end": sub.current_period_end.isoformat() if sub.current_period_end else None,
        "comped": sub.comped,
    }


def period_after(start, interval):
    return start + (relativedelta(years=1) if interval == Interval.YEARLY else relativedelta(months=1))


def _locked(tenant):
    return Subscription.objects.select_for_update().select_related("plan", "tenant").get(tenant=tenant)


def on_tenant_approved(sender, *, tenant, **kwargs):
    start_trial(tenant)


def on_tenant_updated(sender, *, tenant, changes, acting_user, **kwargs):
    """An admin edit of the tenant's plan or trial end is the subscription's (what entitlements and the billing clock
    read): the same rules as the billing API's (a downgrade must fit, only a trial has an end)."""
    if tenant.status not in ("active", "suspended") or entitlements.subscription_of(tenant) is None:
        return  # no subscription before approval: approval starts it from the tenant row
    if "plan" in changes and changes["plan"] is not None:
        change_plan(tenant, acting_user=acting_user, plan=changes["plan"])
    if "trial_ends_at" in changes:
        set_trial_end(tenant, acting_user=acting_user, ends_at=changes["trial_ends_at"])


def set_trial_end(tenant, *, acting_user, ends_at, now=None):
    """A trial's end moved to `ends_at` (earlier or later; the billing clock acts on it). 409 not_on_trial for a paid
    subscription; 400 invalid_trial_end for none."""
    now = now or timezone.now()
    if ends_at is None:
        raise DomainError(BillingError.INVALID_TRIAL_END, "A trial needs an end; to end it now, give the time now.")
    with transaction.atomic():
        sub = _locked(tenant)
        if sub.status not in (S.TRIALING, S.READ_ONLY, S.SUSPENDED) or sub.current_period_end:
            raise DomainError(BillingError.NOT_ON_TRIAL, "Only a trial (or a lapsed trial) has an end to move.",
                              {"billing_status": sub.status})
        before = snapshot(sub)
        sub.trial_ends_at = ends_at
        if ends_at > now:
            sub.status = S.TRIALING
            _restore(sub)
            sub.reminder_3d_sent_at = sub.reminder_1d_sent_at = None
        sub.save()
        Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=ends_at)
        audit.record("billing.trial_end_set", actor=acting_user, target=sub, before=before, after=snapshot(sub),
                     tenant=tenant)
    return sub


def start_trial(tenant):
    """Called by approval, inside its transaction: the trial the tenant row already carries becomes billing's."""

    if tenant.plan is None:
        tenant.plan = Plan.objects.order_by("sort_order", "id").first()
    Customer.objects.get_or_create(tenant=tenant)
    subscription, _ = Subscription.objects.update_or_create(
        tenant=tenant,
        defaults={"plan": tenant.plan, "status": S.TRIALING, "trial_ends_at": tenant.trial_ends_at},
    )
    return subscription


def _set_plan(sub, plan):
    sub.plan = plan
    Tenant.objects.filter(pk=sub.tenant_id).update(plan=plan)  # limits follow the subscription at once


def _restore(sub):
    """Back to full access: clears read-only and billing suspension."""
    sub.read_only_since = None
    sub.suspended_at = None


# --- the billing clock -----------------------------------------------------------------------------------

def run_billing_clock(now=None):
    """Trial reminders, trial expiry and grace-period suspension. Idempotent: safe to run twice or late."""
    now = now or timezone.now()
    done = {"reminders": 0, "read_only": 0, "suspended": 0}
    # A trial that went through Stripe Checkout is Stripe's to end: its webhooks say active or unpaid.
    trialing = Subscription.objects.filter(status=S.TRIALING, comped=False, trial_ends_at__isnull=False,
                                           stripe_subscription_id__isnull=True)
    for sub_id in trialing.filter(trial_ends_at__lte=now + timedelta(days=3)).values_list("id", flat=True):
        result = _advance_trial(sub_id, now)
        if result:
            done[result] += 1
    grace = timedelta(days=settings.BILLING_GRACE_DAYS)
    overdue = Subscription.objects.filter(status=S.READ_ONLY, read_only_since__lte=now - grace)
    for sub_id in overdue.values_list("id", flat=True):
        if _suspend_after_grace(sub_id, now):
            done["suspended"] += 1
    return done


@transaction.atomic
def _advance_trial(sub_id, now):
    sub = Subscription.objects.select_for_update().select_related("tenant", "plan").get(pk=sub_id)
    if sub.status != S.TRIALING or sub.comped or sub.trial_ends_at is None:
        return None
    left = sub.trial_ends_at - now
    if left <= timedelta(0):
        return "read_only" if _make_read_only(sub, now, "trial_expired") else None
    if left <= timedelta(days=1) and sub.reminder_1d_sent_at is None:
        sub.reminder_1d_sent_at = now
        sub.reminder_3d_sent_at = sub.reminder_3d_sent_at or now
        sub.save(update_fields=["reminder_1d_sent_at", "reminder_3d_sent_at", "updated_at"])
        tell_tenant(sub.tenant, "trial_ending", "Your trial ends in 1 day. Choose a plan on the Billing page to "
                    "keep sending without interruption.", subject="Your trial ends tomorrow")
        return "reminders"
    if left <= timedelta(days=3) and sub.reminder_3d_sent_at is None:
        sub.reminder_3d_sent_at = now
        sub.save(update_fields=["reminder_3d_sent_at", "updated_at"])
        tell_tenant(sub.tenant, "trial_ending", "Your trial ends in 3 days. Choose a plan on the Billing page to "
                    "keep sending without interruption.", subject="Your trial ends in 3 days")
        return "reminders"
    return None


def _make_read_only(sub, now, reason):
    if sub.status in (S.READ_ONLY, S.SUSPENDED):
        return False
    before = snapshot(sub)
    sub.status = S.READ_ONLY
    sub.read_only_since = now
    sub.save()
    audit.record(f"billing.read_only.{reason}", actor=None, target=sub, before=before, after=snapshot(sub),
                 tenant=sub.tenant)
    what = "Your trial has ended" if reason == "trial_expired" else "We could not collect your payment"
    tell_tenant(sub.tenant, "read_only",
                f"{what}. {sub.tenant.name} is now read-only: sending and new sessions are paused, nothing is "
                f"deleted. Pay within {settings.BILLING_GRACE_DAYS} days to avoid suspension.",
                subject=f"{sub.tenant.name} is read-only until you pay")
    return True


@transaction.atomic
def _suspend_after_grace(sub_id, now):
    sub = Subscription.objects.select_for_update().select_related("tenant", "plan").get(pk=sub_id)
    if sub.status != S.READ_ONLY or sub.grace_ends_at() is None or sub.grace_ends_at() > now:
        return False
    before = snapshot(sub)
    sub.status = S.SUSPENDED
    sub.suspended_at = now
    sub.save()
    audit.record("billing.suspended", actor=None, target=sub, before=before, after=snapshot(sub), tenant=sub.tenant)
    tell_tenant(sub.tenant, "suspended", f"{sub.tenant.name} is suspended for non-payment. Paying restores it at "
                "once; nothing has been deleted.", subject=f"{sub.tenant.name} is suspended")
    return True


def mark_payment_failed(tenant, now, *, final):
    """A renewal failed. While Stripe retries the tenant keeps working (past_due); when Stripe gives up
    (`final`), it turns read-only and the grace period starts."""
    with transaction.atomic():
        sub = _locked(tenant)
        if final:
            _make_read_only(sub, now, "payment_failed")
        elif sub.status == S.ACTIVE:
            before = snapshot(sub)
            sub.status = S.PAST_DUE
            sub.save()
            audit.record("billing.past_due", actor=None, target=sub, before=before, after=snapshot(sub),
                         tenant=tenant)
            tell_tenant(tenant, "payment_failed", "A payment failed; we'll retry. Check your card on the Billing "
                        "page.", subject="Your payment failed")
        return sub


# --- payments ------------------------------------------------------------------------------------------

def parse_amount(value):
    try:
        amount = Decimal(str(value))
        if amount.is_finite():
            amount = amount.quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise DomainError(BillingError.INVALID_AMOUNT, "Enter the amount as a number, e.g. 150000 or 49.90.")
    if not amount.is_finite():
        raise DomainError(BillingError.INVALID_AMOUNT, "Enter the amount as a number, e.g. 150000 or 49.90.")
    if amount <= 0:
        raise DomainError(BillingError.INVALID_AMOUNT, "The amount must be more than zero.")
    if amount >= Decimal("1e10"):
        raise DomainError(BillingError.INVALID_AMOUNT, "That amount is too large.")
    return amount


def record_manual_payment(tenant, *, acting_user, amount, interval, plan=None, currency=None, reference="",
                          now=None):
    """An offline payment (bank transfer…): activates the subscription or extends it by one interval."""
    now = now or timezone.now()
    amount = parse_amount(amount)
    if interval not in Interval.values:
        raise DomainError(BillingError.INVALID_INTERVAL, "The interval must be monthly or yearly.")
    with transaction.atomic():
        sub = _locked(tenant)
        before = snapshot(sub)
        if plan is not None and plan != sub.plan:
            _check_fits(tenant, plan)
            _set_plan(sub, plan)
        starts = sub.current_period_end if sub.status == S.ACTIVE and sub.current_period_end and \
            sub.current_period_end > now else now
        sub.status = S.ACTIVE
        sub.interval = interval
        sub.current_period_start = starts
        sub.current_period_end = period_after(starts, interval)
        sub.cancel_at_period_end = False
        _restore(sub)
        sub.save()
        payment = Payment.objects.create(
            tenant=tenant, source=Payment.Source.MANUAL, status=Payment.Status.PAID, amount=amount,
            currency=(currency or settings.BILLING_CURRENCY).lower(), period_start=starts,
            period_end=sub.current_period_end, reference=reference[:200], recorded_by=acting_user,
        )
        audit.record("billing.manual_payment", actor=acting_user, target=sub, before=before,
                     after={**snapshot(sub), "payment_id": payment.pk, "amount": str(amount)}, tenant=tenant)
        tell_tenant(tenant, "payment_recorded",
                    f"Payment of {amount} {payment.currency.upper()} recorded. Your {sub.plan.name} subscription "
                    f"runs until {sub.current_period_end:%d %b %Y}.", subject="Payment received")
    return payment


def extend_trial(tenant, *, acting_user, days, now=None):
    now = now or timezone.now()
    if not isinstance(days, int) or not 1 <= days <= 365:
        raise DomainError(BillingError.INVALID_DAYS, "Extend the trial by 1 to 365 days.")
    with transaction.atomic():
        sub = _locked(tenant)
        if sub.status not in (S.TRIALING, S.READ_ONLY, S.SUSPENDED) or sub.current_period_end:
            raise DomainError(BillingError.NOT_ON_TRIAL, "Only a trial (or a lapsed trial) can be extended.",
                              {"billing_status": sub.status})
        before = snapshot(sub)
        sub.trial_ends_at = max(sub.trial_ends_at or now, now) + timedelta(days=days)
        sub.status = S.TRIALING
        sub.reminder_3d_sent_at = sub.reminder_1d_sent_at = None
        _restore(sub)
        sub.save()
        Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=sub.trial_ends_at)
        audit.record("billing.trial_extended", actor=acting_user, target=sub, before=before, after=snapshot(sub),
                     tenant=tenant)
        tell_tenant(tenant, "trial_extended", f"Your trial was extended to {sub.trial_ends_at:%d %b %Y}.",
                    subject="Your trial was extended")
    return sub


def comp_plan(tenant, *, acting_user, plan, now=None):
    """Give a plan for free: active, no payment expected, no expiry until canceled."""
    with transaction.atomic():
        sub = _locked(tenant)
        before = snapshot(sub)
        _check_fits(tenant, plan)
        _set_plan(sub, plan)
        sub.status = S.ACTIVE
        sub.comped = True
        sub.current_period_start = now or timezone.now()
        sub.current_period_end = None
        _restore(sub)
        sub.save()
        audit.record("billing.comped", actor=acting_user, target=sub, before=before, after=snapshot(sub),
                     tenant=tenant)
        tell_tenant(tenant, "comped", f"You've been given the {plan.name} plan at no charge.",
                    subject=f"You're on {plan.name}, on us")
    return sub


def cancel_subscription(tenant, *, acting_user, now=None):
    """Cancel now: the tenant turns read-only (data kept) and the grace period starts."""
    now = now or timezone.now()
    with transaction.atomic():
        sub = _locked(tenant)
        if sub.status == S.CANCELED:
            raise DomainError(BillingError.ALREADY_CANCELED, "This subscription is already canceled.")
        before = snapshot(sub)
        sub.status = S.CANCELED
        sub.comped = False
        sub.read_only_since = now
        sub.save()
        audit.record("billing.canceled", actor=acting_user, target=sub, before=before, after=snapshot(sub),
                     tenant=tenant)
        tell_tenant(tenant, "canceled", f"The {sub.plan.name} subscription of {tenant.name} was canceled. The "
                    "business is read-only; subscribe again on the Billing page to continue.",
                    subject="Your subscription was canceled")
    return sub


# --- plan changes ------------------------------------------------------------------------------------

def _check_fits(tenant, plan):
    problems = entitlements.over_limits(tenant, plan)
    if problems:
        parts = [f"you have {in_use} {noun}s and {plan.name} allows {allowed}: remove {in_use - allowed} first"
                 for _, noun, in_use, allowed in problems]
        raise DomainError(BillingError.DOWNGRADE_BLOCKED, f"Cannot move to {plan.name}: " + "; ".join(parts) + ".",
                          {limit: {"in_use": in_use, "allowed": allowed} for limit, _, in_use, allowed in problems})


def change_plan(tenant, *, acting_user, plan, interval=None):
    """Upgrades apply at once; downgrades only when current usage fits the smaller plan."""
    with transaction.atomic():
        sub = _locked(tenant)
        before = snapshot(sub)
        _check_fits(tenant, plan)
        _set_plan(sub, plan)
        if interval:
            sub.interval = interval
        sub.save()
        audit.record("billing.plan_changed", actor=acting_user, target=sub, before=before, after=snapshot(sub),
                     tenant=tenant)
        tell_tenant(tenant, "plan_changed", f"Your plan is now {plan.name}.")
    return sub
