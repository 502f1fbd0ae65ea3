"""Platform admin API over tenants: /api/v1/tenants…"""
from django.db import connection
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import PAGE_PARAMETERS, PageLimitPagination, choice_param
from core.permissions import Perm

from . import actions, stats
from .errors import TenantError
from .models import Tenant
from .permissions import IsPlatformAdmin
from .serializers import (
    ApproveSerializer,
    ReasonSerializer,
    RejectSerializer,
    TenantSerializer,
    TenantSettingsSerializer,
    TenantUpdateSerializer,
)


def _tenant(pk):
    return get_object_or_404(Tenant.objects.exclude(status=Tenant.Status.POOLED).select_related("plan"), pk=pk)


def _validated(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class PlatformAdminView(APIView):
    required_permission = Perm.PLATFORM
    permission_classes = [IsPlatformAdmin]


class TenantListView(PlatformAdminView):
    """The platform's tenants. Creating one (POST) makes its owner's account too: accounts.api.TenantListView."""

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=[s for s in Tenant.Status.values if s != "pooled"]),
            *PAGE_PARAMETERS,
        ],
        responses=TenantSerializer(many=True),
    )
    def get(self, request):
        tenants = Tenant.objects.exclude(status=Tenant.Status.POOLED).select_related("plan").order_by("-created_at")
        wanted = choice_param(request, "status", [s for s in Tenant.Status.values if s != Tenant.Status.POOLED],
                              TenantError.INVALID_STATUS)
        if wanted is not None:
            tenants = tenants.filter(status=wanted)
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(tenants, request, view=self)
        return paginator.get_paginated_response(TenantSerializer(page, many=True).data)


class TenantDetailView(PlatformAdminView):
    @extend_schema(responses=TenantSerializer)
    def get(self, request, pk):
        return Response(TenantSerializer(_tenant(pk)).data)

    @extend_schema(request=TenantUpdateSerializer, responses=TenantSerializer)
    def patch(self, request, pk):
        tenant = _tenant(pk)
        data = _validated(TenantUpdateSerializer, request.data)
        tenant = actions.update_tenant(tenant, acting_user=request.user, **data)
        return Response(TenantSerializer(tenant).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        actions.delete_tenant(_tenant(pk), acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TenantStatsView(PlatformAdminView):
    @extend_schema(responses=dict)
    def get(self, request, pk):
        tenant = _tenant(pk)
        schema_bytes = 0
        if tenant.has_schema:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                    [tenant.schema_name],
                )
                schema_bytes = int(cursor.fetchone()[0])
        return Response({
            "tenant_id": tenant.pk,
            "status": tenant.status,
            "members": tenant.memberships.count(),
            "schema_bytes": schema_bytes,
            "trial_days_left": tenant.trial_days_left(),
            "limits": tenant.plan.limits() if tenant.plan_id else None,
            **stats.of(tenant),
        })


class TenantSettingsView(PlatformAdminView):
    @extend_schema(responses=TenantSettingsSerializer)
    def get(self, request, pk):
        tenant = _tenant(pk)
        return Response({"webhook_url": tenant.webhook_url, "timezone": tenant.timezone})

    @extend_schema(request=TenantSettingsSerializer, responses=TenantSettingsSerializer)
    def patch(self, request, pk):
        tenant = _tenant(pk)
        data = _validated(TenantSettingsSerializer, request.data)
        tenant = actions.update_tenant_settings(tenant, acting_user=request.user, **data)
        return Response({"webhook_url": tenant.webhook_url, "timezone": tenant.timezone})


class TenantTransitionView(PlatformAdminView):
    """POST /tenants/{id}/<verb>"""

    verb = None
    request_serializer = ReasonSerializer

    def post(self, request, pk):
        tenant = _tenant(pk)
        data = _validated(self.request_serializer, request.data)
        tenant = self.transition(tenant, request.user, data)
        return Response(TenantSerializer(Tenant.objects.select_related("plan").get(pk=tenant.pk)).data)


class ApproveView(TenantTransitionView):
    request_serializer = ApproveSerializer

    @extend_schema(request=ApproveSerializer, responses=TenantSerializer)
    def post(self, request, pk):
        return super().post(request, pk)

    def transition(self, tenant, user, data):
        return actions.approve_tenant(tenant, acting_user=user, plan=data.get("plan"))


class RejectView(TenantTransitionView):
    request_serializer = RejectSerializer

    @extend_schema(request=RejectSerializer, responses=TenantSerializer)
    def post(self, request, pk):
        return super().post(request, pk)

    def transition(self, tenant, user, data):
        return actions.reject_tenant(tenant, acting_user=user, reason=data["reason"])


class SuspendView(TenantTransitionView):
    @extend_schema(request=ReasonSerializer, responses=TenantSerializer)
    def post(self, request, pk):
        return super().post(request, pk)

    def transition(self, tenant, user, data):
        return actions.suspend_tenant(tenant, acting_user=user, reason=data["reason"])


class ReactivateView(TenantTransitionView):
    @extend_schema(request=None, responses=TenantSerializer)
    def post(self, request, pk):
        return super().post(request, pk)

    def transition(self, tenant, user, data):
        return actions.reactivate_tenant(tenant, acting_user=user)
