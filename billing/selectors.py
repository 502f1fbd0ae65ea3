"""Read-side helpers for the billing pages: prices per plan, days left, which banner a tenant sees."""
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from tenants.errors import TenantError
from tenants.models import Plan

from . import entitlements
from .models import Interval, Price, Subscription

S = Subscription.Status


@dataclass(frozen=True)
class Amount:
    value: Decimal
    currency: str

    def __str__(self):
        whole = self.value == self.value.to_integral_value()
        number = f"{self.value:,.0f}" if whole else f"{self.value:,.2f}"
        return f"{self.currency.upper()} {number}"


@dataclass(frozen=True)
class PlanOffer:
    plan: Plan
    monthly: Amount | None
    yearly: Amount | None

    @property
    def priced(self):
        return self.monthly is not None or self.yearly is not None

    @property
    def free(self):
        """Priced, and nothing to pay whichever the interval."""
        amounts = [amount for amount in (self.monthly, self.yearly) if amount is not None]
        return bool(amounts) and all(amount.value == 0 for amount in amounts)


def days_left(until, now=None):
    """Whole days left, rounded up (6 days 23 hours is 7 days); 0 once `until` has passed."""
    if until is None:
        return None
    remaining = until - (now or timezone.now())
    if remaining <= timedelta(0):
        return 0
    return remaining.days + (1 if remaining.seconds or remaining.microseconds else 0)


def _offline_amount(interval):
    value = settings.MONTHLY_PRICE if interval == Interval.MONTHLY else settings.YEARLY_PRICE
    if not value or value <= 0:
        return None
    return Amount(Decimal(str(value)), settings.BILLING_CURRENCY)


def plan_offers(current_plan=None):
    """Public plans (and the tenant's own, if it is not public) with their price per interval: a Price row
    when an admin set one, otherwise the offline MONTHLY_PRICE / YEARLY_PRICE in BILLING_CURRENCY."""
    plans = list(Plan.objects.filter(is_public=True))
    if current_plan is not None and current_plan not in plans:
        plans.append(current_plan)
        plans.sort(key=lambda plan: (plan.sort_order, plan.pk))
    prices = {(p.plan_id, p.interval): Amount(p.amount, p.currency)
              for p in Price.objects.filter(plan__in=plans)}
    return [
        PlanOffer(plan,
                  prices.get((plan.pk, Interval.MONTHLY)) or _offline_amount(Interval.MONTHLY),
                  prices.get((plan.pk, Interval.YEARLY)) or _offline_amount(Interval.YEARLY))
        for plan in plans
    ]


def trial_days_left(subscription, now=None):
    if subscription is None or subscription.status != S.TRIALING or subscription.comped:
        return None
    return days_left(subscription.trial_ends_at, now)


def banner_for(subscription, access):
    """Which billing banner a tenant page shows: trial, past_due, read_only, suspended or None."""
    if subscription is None or access.code == TenantError.DELETION_SCHEDULED:
        return None  # a workspace being deleted has its own banner (accounts/_deletion_banner.html)
    if access.level == entitlements.SUSPENDED:
        return "suspended"
    if access.level == entitlements.READ_ONLY:
        return "read_only"
    if subscription.status == S.PAST_DUE:
        return "past_due"
    if trial_days_left(subscription) is not None:
        return "trial"
    return None


def has_stripe_subscription(subscription):
    """Subscribed through Stripe: plan, card and cancellation are managed in Stripe's portal, not Checkout."""
    return bool(subscription and subscription.stripe_subscription_id and subscription.status != S.CANCELED)
