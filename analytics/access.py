"""Who may see analytics: every member of a workspace whose plan includes the `analytics` feature."""
from core.errors import DomainError

from .errors import AnalyticsError


def plan_includes_analytics(tenant):
    plan = getattr(tenant, "plan", None)
    return bool(plan is not None and (plan.features or {}).get("analytics"))


def require_analytics(tenant):
    if not plan_includes_analytics(tenant):
        raise DomainError(AnalyticsError.NOT_IN_PLAN,
                          "Analytics is not part of this workspace's plan: choose a plan that includes it.")
