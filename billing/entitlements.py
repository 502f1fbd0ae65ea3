"""The one place that decides what a tenant may do now, from its status, its subscription and its plan.

Views, the API and the session host ask here; nothing else compares subscription states.
"""
from dataclasses import dataclass, field

from django.urls import reverse

from core.errors import CommonError, DomainError
from tenants.errors import TenantError

from .errors import BillingError
from .models import Subscription

FULL, READ_ONLY, SUSPENDED, NONE = "full", "read_only", "suspended", "none"


@dataclass(frozen=True)
class Access:
    level: str
    code: object = None  # an ErrorCode: why not FULL
    message: str = ""
    details: dict = field(default_factory=dict)

    @property
    def can_write(self):
        return self.level == FULL

    @property
    def can_read(self):
        return self.level in (FULL, READ_ONLY)


def subscription_of(tenant):

    try:
        return tenant.subscription
    except Subscription.DoesNotExist:
        return None


def access_for(tenant):

    if tenant is None:
        return Access(NONE, TenantError.NO_TENANT, "This user does not belong to any business.")
    if tenant.status != "active":
        return Access(NONE, TenantError(f"tenant_{tenant.status}"),
                      f"This business is {tenant.get_status_display().lower()}.")
    if tenant.deletion_due_at is not None:
        return Access(READ_ONLY, TenantError.DELETION_SCHEDULED,
                      f"This workspace will be deleted on {tenant.deletion_due_at:%d %b %Y %H:%M} UTC and is "
                      "read-only until then. An owner can cancel the deletion on the Settings page.",
                      {"deletes_at": tenant.deletion_due_at.isoformat(), "settings_url": reverse("workspace_settings")})
    subscription = subscription_of(tenant)
    if subscription is None or subscription.status in (
        Subscription.Status.TRIALING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE
    ):
        return Access(FULL)
    details = {"billing_status": subscription.status, "billing_url": reverse("billing")}
    if subscription.status == Subscription.Status.SUSPENDED:
        return Access(SUSPENDED, CommonError.PAYMENT_REQUIRED,
                      "This business is suspended for non-payment. Pay on the Billing page to restore it at once; "
                      "nothing has been deleted.", details)
    grace = subscription.grace_ends_at()
    until = f" until {grace:%d %b %Y}" if grace else ""
    reason = "The subscription was canceled" if subscription.status == Subscription.Status.CANCELED else (
        "The trial has ended" if subscription.trial_ends_at and not subscription.current_period_end
        else "Payment failed")
    return Access(READ_ONLY, CommonError.PAYMENT_REQUIRED,
                  f"{reason}: this business is read-only{until}, then suspended. Pay on the Billing page to "
                  "continue; nothing has been deleted.", details)


def require_write(tenant):
    """Raise 402 payment_required (or 403 for an inactive tenant) unless the tenant may change things."""
    access = access_for(tenant)
    if access.can_write:
        return access
    raise DomainError(access.code, access.message, access.details or None)


def plan_of(tenant):
    subscription = subscription_of(tenant)
    return subscription.plan if subscription is not None else tenant.plan


def limits_for(tenant):
    plan = plan_of(tenant)
    return plan.limits() if plan else {}


# What a plan limit counts. Apps that own a limited resource register a counter here (the sessions issue
# adds "max_sessions").
USAGE_COUNTERS = {
    # Pending invitations hold a seat: inviting past the limit is refused, not accepting later.
    "max_users": ("team member", lambda tenant: tenant.memberships.count() + tenant.invitations.pending().count()),
}


def usage_of(tenant):
    return {limit: counter(tenant) for limit, (_, counter) in USAGE_COUNTERS.items()}


def over_limits(tenant, plan):
    """What must be removed before `plan` fits: [(limit, noun, in use, allowed)]."""
    problems = []
    for limit, (noun, counter) in USAGE_COUNTERS.items():
        allowed = getattr(plan, limit)
        in_use = counter(tenant)
        if allowed != -1 and in_use > allowed:
            problems.append((limit, noun, in_use, allowed))
    return problems


def require_within_limit(tenant, limit, adding=1):
    """Raise 402 plan_limit_reached if adding `adding` more of `limit` would exceed the plan."""
    plan = plan_of(tenant)
    noun, counter = USAGE_COUNTERS[limit]
    allowed = getattr(plan, limit) if plan else 0
    in_use = counter(tenant)
    if allowed != -1 and in_use + adding > allowed:
        raise DomainError(BillingError.PLAN_LIMIT_REACHED,
                          f"Your {plan.name} plan allows {allowed} {noun}{'s' if allowed != 1 else ''} and you have "
                          f"{in_use}. Upgrade on the Billing page to add more.",
                          {"limit": limit, "allowed": allowed, "in_use": in_use, "billing_url": reverse("billing")})
