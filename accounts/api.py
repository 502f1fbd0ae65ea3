from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.entitlements import access_for, limits_for, plan_of, subscription_of
from billing.permissions import CanWrite
from core.api import PageLimitPagination, StrictModelSerializer, StrictSerializer
from core.permissions import Perm, require
from tenants import api as tenants_api
from tenants.models import Tenant
from tenants.permissions import HasActiveTenant
from tenants.serializers import PlanSerializer, TenantCreateSerializer, TenantSerializer

from .actions import create_api_key, create_tenant, revoke_api_key
from .models import ApiKey


def require_owner_or_admin(request, doing):
    """403 permission_denied unless the principal's role may manage the workspace (core.permissions). Kept for
    callers written before the permission table; new views declare `required_permission` instead."""
    require(getattr(request._request, "membership", None), Perm.SETTINGS_MANAGE)


def _billing_summary(tenant):
    subscription = subscription_of(tenant)
    access = access_for(tenant)
    return {"status": subscription.status if subscription else None, "access": access.level,
            "message": access.message or None}


class MeView(APIView):
    required_permission = Perm.SIGNED_IN

    @extend_schema(responses=inline_serializer("Me", {
        "user": inline_serializer("MeUser", {"id": serializers.IntegerField(), "email": serializers.EmailField(),
                                             "full_name": serializers.CharField(),
                                             "is_platform_admin": serializers.BooleanField()}),
        "tenant": inline_serializer("MeTenant", {"id": serializers.IntegerField(), "name": serializers.CharField(),
                                                 "slug": serializers.CharField(), "status": serializers.CharField()},
                                    allow_null=True),
        "role": serializers.CharField(allow_null=True),
        "plan": PlanSerializer(allow_null=True),
        "limits": serializers.DictField(allow_null=True),
        "billing": serializers.DictField(allow_null=True),
        "trial_ends_at": serializers.DateTimeField(allow_null=True),
        "trial_days_left": serializers.IntegerField(allow_null=True),
    }))
    def get(self, request):
        user = request.user
        tenant = getattr(request._request, "tenant", None)
        if tenant is not None or not user.is_platform_admin:
            HasActiveTenant().has_permission(request, self)
        membership = getattr(request._request, "membership", None)
        return Response({
            "user": {"id": user.pk, "email": user.email, "full_name": user.full_name,
                     "is_platform_admin": user.is_platform_admin},
            "tenant": {"id": tenant.pk, "name": tenant.name, "slug": tenant.slug, "status": tenant.status}
            if tenant else None,
            "role": membership.role if membership else None,
            "plan": PlanSerializer(plan_of(tenant)).data if tenant and plan_of(tenant) else None,
            "limits": limits_for(tenant) if tenant else None,
            "billing": _billing_summary(tenant) if tenant else None,
            "trial_ends_at": tenant.trial_ends_at if tenant else None,
            "trial_days_left": tenant.trial_days_left() if tenant else None,
        })


class ApiKeySerializer(StrictModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=80)


class ApiKeyListView(APIView):
    """The caller's own keys in the current tenant."""
    required_permission = Perm.API_KEYS_MANAGE

    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]

    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request):

        keys = ApiKey.objects.filter(user=request.user, tenant=request._request.tenant)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: inline_serializer("NewApiKey", {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "prefix": serializers.CharField(),
        "key": serializers.CharField(help_text="Shown once; only its hash is stored."),
    })})
    def post(self, request):
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = create_api_key(user=request.user, tenant=request._request.tenant,
                                  name=serializer.validated_data["name"])
        return Response({"id": key.pk, "name": key.name, "prefix": key.prefix, "key": raw}, status=201)


class ApiKeyDetailView(APIView):
    required_permission = Perm.API_KEYS_REVOKE_OWN
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        """Revoke one of your keys (allowed while read-only: taking access away is always possible)."""
        key = get_object_or_404(ApiKey, pk=pk, user=request.user, tenant=request._request.tenant)
        revoke_api_key(key, acting_user=request.user)
        return Response(status=204)


class TenantListView(tenants_api.TenantListView):
    """GET /api/v1/tenants lists (tenants.api); POST opens a tenant with its owner, whose account is made here."""

    @extend_schema(request=TenantCreateSerializer, responses={201: TenantSerializer})
    def post(self, request):
        serializer = TenantCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant = create_tenant(acting_user=request.user, **serializer.validated_data)
        return Response(TenantSerializer(Tenant.objects.get(pk=tenant.pk)).data, status=201)
