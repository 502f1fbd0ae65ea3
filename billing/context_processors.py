"""Billing state for every page of a working tenant: the banner in base.html, the dashboard's billing card
and notifications. Lazy: a page that shows none of it runs no query."""
from functools import cached_property

from core.permissions import Perm, can

from . import entitlements, selectors

# Pages that explain the billing state themselves: no banner on top of them.
PAGES_WITHOUT_BANNER = {"billing", "billing_return", "billing_suspended"}
LATEST_NOTIFICATIONS = 5


class TenantBilling:
    def __init__(self, request):
        self.request = request
        self.tenant = request.tenant

    @cached_property
    def subscription(self):
        return entitlements.subscription_of(self.tenant)

    @cached_property
    def access(self):
        return entitlements.access_for(self.tenant)

    @cached_property
    def trial_days_left(self):
        return selectors.trial_days_left(self.subscription)

    @cached_property
    def banner(self):
        match = getattr(self.request, "resolver_match", None)
        if match is not None and match.url_name in PAGES_WITHOUT_BANNER:
            return None
        return selectors.banner_for(self.subscription, self.access)

    @cached_property
    def unread_notifications(self):
        return list(self.tenant.notifications.filter(read_at__isnull=True)[:LATEST_NOTIFICATIONS])

    @cached_property
    def unread_count(self):
        return self.tenant.notifications.filter(read_at__isnull=True).count()

    @property
    def is_owner(self):
        membership = getattr(self.request, "membership", None)
        return can(membership, Perm.BILLING_MANAGE)


def billing(request):
    tenant = getattr(request, "tenant", None)
    user = getattr(request, "user", None)
    if tenant is None or not tenant.is_active or user is None or not user.is_authenticated:
        return {}
    return {"billing": TenantBilling(request)}
