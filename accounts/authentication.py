from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, FilteredRelation, Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from audit import context as audit_context
from billing.models import Subscription
from core import rows
from core.permissions import Perm, declared_permission, require_scope
from tenants.models import Plan, Tenant
from tenants.resolution import TenantNotSelectable, check_key_selector, selector_from_headers

from .models import ApiKey, Membership, User, hash_api_key

LAST_USED_RESOLUTION = timedelta(seconds=60)


def raw_key_of(request):
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key", "").strip() or None


def principal_of(key_hash):
    """The key with this hash and everything a request asks of its principal, in one statement: its user, its
    tenant with the plan and subscription (billing.entitlements reads them once per request: this tenant object
    lives as long as the request) and the user's membership of that tenant (key.tenant_membership, None once the
    user left it). Written out (core.rows): the ORM spent ~2 ms of CPU compiling this join on every request;
    SPEED_PATH_SQL=false has the ORM build it (_principal_by_orm), to measure that again."""
    if not settings.SPEED_PATH_SQL:
        return _principal_by_orm(key_hash)

    t = rows.table
    found = rows.select(
        ApiKey, "k",
        f"JOIN {t(User)} u ON u.id = k.user_id LEFT JOIN {t(Tenant)} t ON t.id = k.tenant_id "
        f"LEFT JOIN {t(Plan)} p ON p.id = t.plan_id LEFT JOIN {t(Subscription)} s ON s.tenant_id = t.id "
        f"LEFT JOIN {t(Plan)} sp ON sp.id = s.plan_id "
        f"LEFT JOIN {t(Membership)} m ON m.user_id = k.user_id AND m.tenant_id = k.tenant_id WHERE k.key_hash = %s",
        [key_hash], joined=[(User, "u"), (Tenant, "t"), (Plan, "p"), (Subscription, "s"), (Plan, "sp"),
                            (Membership, "m")])
    if not found:
        return None
    key, user, tenant, plan, subscription, subscription_plan, membership = found[0]
    key.user, key.tenant, key.tenant_membership = user, tenant, membership
    if tenant is not None:
        tenant.plan = plan
        if subscription is not None:
            subscription.plan = subscription_plan
            tenant.subscription = subscription
        else:  # known to have none: entitlements asks without another query
            Tenant.subscription.related.set_cached_value(tenant, None)
    return key


def _principal_by_orm(key_hash):
    """principal_of's statement and result, the statement compiled by the ORM on every call."""
    membership = FilteredRelation("user__memberships", condition=Q(user__memberships__tenant=F("tenant")))
    key = (ApiKey.objects.annotate(tenant_membership=membership)
           .select_related("user", "tenant__plan", "tenant__subscription__plan", "tenant_membership")
           .filter(key_hash=key_hash).first())
    if key is not None and "tenant_membership" not in key.__dict__:  # the ORM sets nothing for a missing row
        key.tenant_membership = None
    return key


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`. The key names its user and tenant; the request
    then runs in that tenant's schema. The key's scopes are checked here, against what the view declares for the
    method (core.permissions.SCOPES), so no view, whatever its permission classes, runs for a key without the
    scope; the user's role is checked after (HasActiveTenant)."""

    def authenticate(self, request):
        raw = raw_key_of(request)
        if not raw:
            return None
        key = principal_of(hash_api_key(raw))
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if key.is_revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
        now = timezone.now()
        if key.expires_at is not None and key.expires_at <= now:
            if key.replaced_by_id is not None:
                raise exceptions.AuthenticationFailed(
                    "This API key was rotated and its overlap has ended; use the key that replaced it.",
                    code="api_key_expired")
            raise exceptions.AuthenticationFailed("This API key has expired; make a new one.",
                                                  code="api_key_expired")
        if not key.user.is_active:
            raise exceptions.AuthenticationFailed("The user of this API key is deactivated.", code="user_inactive")
        tenant_id, slug = selector_from_headers(request.headers, request.get_host())
        if key.tenant is not None:
            try:
                check_key_selector(key.tenant, tenant_id, slug)
            except TenantNotSelectable:
                raise exceptions.NotFound("No such tenant.")
            membership = key.tenant_membership
            if membership is None:  # the user left the tenant: the key dies with the membership
                raise exceptions.AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
            request._request.tenant = key.tenant
            request._request.membership = membership
            if key.tenant.has_schema:
                connection.set_tenant(key.tenant)
        view = (request.parser_context or {}).get("view")
        perm = declared_permission(view, request.method) if view is not None else None
        # A platform endpoint refuses other users on its own terms (some as a 404, to stay hidden): no scope answer.
        if perm is not None and (perm != Perm.PLATFORM or key.user.is_platform_admin):
            require_scope(key.scopes, perm)
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        request._request.api_key = key
        audit_context.acting_key(key.prefix)
        return key.user, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal API key (sb_…)."}
