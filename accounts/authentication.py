from datetime import timedelta

from django.db import connection
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from tenants.resolution import TenantNotSelectable, check_key_selector, selector_from_headers

from .models import ApiKey, hash_api_key

LAST_USED_RESOLUTION = timedelta(seconds=60)


def _raw_key(request):
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key", "").strip() or None


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`. The key names its user and tenant; the request
    then runs in that tenant's schema."""

    def authenticate(self, request):
        raw = _raw_key(request)
        if not raw:
            return None
        key = (
            ApiKey.objects.select_related("user", "tenant", "tenant__plan")
            .filter(key_hash=hash_api_key(raw))
            .first()
        )
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if key.is_revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
        if not key.user.is_active:
            raise exceptions.AuthenticationFailed("The user of this API key is deactivated.", code="user_inactive")
        tenant_id, slug = selector_from_headers(request.headers, request.get_host())
        if key.tenant is not None:
            try:
                check_key_selector(key.tenant, tenant_id, slug)
            except TenantNotSelectable:
                raise exceptions.NotFound("No such tenant.")
            membership = key.user.memberships.filter(tenant=key.tenant).first()
            if membership is None:  # the user left the tenant: the key dies with the membership
                raise exceptions.AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
            request._request.tenant = key.tenant
            request._request.membership = membership
            if key.tenant.has_schema:
                connection.set_tenant(key.tenant)
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        request._request.api_key = key
        return key.user, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal API key (sb_…)."}
