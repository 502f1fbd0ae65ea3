from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import ApiError
from tenants.models import Tenant
from tenants.serializers import PlanSerializer

INACTIVE_TENANT_ERRORS = {
    Tenant.Status.PENDING: ("tenant_pending", "Your business is awaiting approval by the platform team."),
    Tenant.Status.PROVISIONING: ("tenant_provisioning", "Your workspace is being prepared; try again shortly."),
    Tenant.Status.REJECTED: ("tenant_rejected", "Your application was rejected."),
    Tenant.Status.SUSPENDED: ("tenant_suspended", "Your business is suspended. Contact support to reactivate it."),
}


class HasActiveTenant(permissions.BasePermission):
    """Tenant-scoped endpoints: the principal's tenant must exist and be active."""

    def has_permission(self, request, view):
        tenant = getattr(request._request, "tenant", None)
        if tenant is None:
            raise ApiError(403, "no_tenant", "This user does not belong to any business.")
        if tenant.status != Tenant.Status.ACTIVE:
            code, message = INACTIVE_TENANT_ERRORS[tenant.status]
            raise ApiError(403, code, message, {"status": tenant.status})
        return True


class MeView(APIView):
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
            "plan": PlanSerializer(tenant.plan).data if tenant and tenant.plan_id else None,
            "limits": tenant.plan.limits() if tenant and tenant.plan_id else None,
            "trial_ends_at": tenant.trial_ends_at if tenant else None,
            "trial_days_left": tenant.trial_days_left() if tenant else None,
        })
