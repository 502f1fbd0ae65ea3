"""Which tenant a request acts for. Always derived from a verified principal (session user or API key).

A subdomain, `X-Tenant-ID` or `X-Tenant-Slug` may only *select* among the tenants the principal belongs to;
a selector that names any other tenant resolves to nothing, which callers turn into a 404.
"""
from django.conf import settings

from .models import Tenant

SESSION_KEY = "current_tenant_id"
NON_TENANT_SUBDOMAINS = {"www", "api", "app"}


class TenantNotSelectable(Exception):
    """The request named a tenant the principal does not belong to (or that does not exist)."""


def selector_from_headers(headers, host=""):
    """(tenant_id, slug) named by the request, if any. headers: a case-insensitive mapping."""
    tenant_id = (headers.get("X-Tenant-ID") or "").strip() or None
    slug = (headers.get("X-Tenant-Slug") or "").strip().lower() or None
    if tenant_id is None and slug is None and host:
        hostname = host.split(":")[0].lower()
        suffix = "." + settings.TENANT_BASE_DOMAIN.lower()
        if hostname.endswith(suffix):
            sub = hostname[: -len(suffix)]
            if sub and "." not in sub and sub not in NON_TENANT_SUBDOMAINS:
                slug = sub
    return tenant_id, slug


def _matches(tenant, tenant_id, slug):
    if tenant_id is not None and str(tenant.pk) != tenant_id:
        return False
    if slug is not None and tenant.slug != slug:
        return False
    return True


def select_membership(user, *, tenant_id=None, slug=None, remembered_id=None):
    """The membership this request acts through, or None if the user has none. Raises TenantNotSelectable."""
    memberships = list(
        user.memberships.select_related("tenant", "tenant__plan").exclude(tenant__status=Tenant.Status.POOLED)
    )
    if tenant_id is not None or slug is not None:
        for membership in memberships:
            if _matches(membership.tenant, tenant_id, slug):
                return membership
        raise TenantNotSelectable()
    if remembered_id is not None:
        for membership in memberships:
            if membership.tenant_id == remembered_id:
                return membership
    return memberships[0] if memberships else None


def check_key_selector(key_tenant, tenant_id, slug):
    """An API key names its tenant; a selector may only repeat it."""
    if (tenant_id is not None or slug is not None) and not _matches(key_tenant, tenant_id, slug):
        raise TenantNotSelectable()
