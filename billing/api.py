"""Billing over the API: a tenant reads its own state; platform admins run the offline/admin operations."""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import StrictModelSerializer, StrictSerializer, field_with_schema
from core.permissions import Perm
from tenants.models import Tenant
from tenants.permissions import HasActiveTenant, IsPlatformAdmin
from tenants.serializers import PlanCodeField

from . import actions, entitlements
from .models import Interval, Payment


class PaymentSerializer(StrictModelSerializer):
    class Meta:
        model = Payment
        fields = ["id", "source", "status", "amount", "currency", "receipt_url", "period_start", "period_end",
                  "reference", "created_at"]


def billing_state(tenant):
    sub = entitlements.subscription_of(tenant)
    access = entitlements.access_for(tenant)
    return {
        "tenant_id": tenant.pk,
        "subscription": None if sub is None else {
            "status": sub.status,
            "plan": sub.plan.code,
            "interval": sub.interval,
            "trial_ends_at": sub.trial_ends_at,
            "current_period_start": sub.current_period_start,
            "current_period_end": sub.current_period_end,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "comped": sub.comped,
            "read_only_since": sub.read_only_since,
            "grace_ends_at": sub.grace_ends_at(),
        },
        "access": {"level": access.level, "code": access.code.value if access.code else None,
                   "message": access.message or None},
        "limits": entitlements.limits_for(tenant),
        "usage": entitlements.usage_of(tenant),
        "payments": PaymentSerializer(tenant.payments.all()[:50], many=True).data,
    }


class OwnBillingView(APIView):
    required_permission = Perm.BILLING_READ
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(responses=dict)
    def get(self, request):
        return Response(billing_state(request._request.tenant))


def _tenant(pk):
    return get_object_or_404(Tenant.objects.filter(status__in=["active", "suspended"]), pk=pk)


class ManualPaymentSerializer(StrictSerializer):
    amount = field_with_schema(serializers.CharField, {"type": "string", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,2})?$"},
                               help_text="Decimal amount, e.g. 150000 or 49.90 (more than zero).")
    currency = field_with_schema(serializers.CharField, {"type": "string", "pattern": "^[A-Za-z]{3}$"},
                                 max_length=3, required=False, help_text="ISO 4217, e.g. IDR (default: the plan's).")
    interval = serializers.ChoiceField(choices=Interval.values)
    plan = PlanCodeField(required=False)
    reference = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class ExtendTrialSerializer(StrictSerializer):
    days = serializers.IntegerField(min_value=1, max_value=365)


class PlanSerializer(StrictSerializer):
    plan = PlanCodeField()
    interval = serializers.ChoiceField(choices=Interval.values, required=False)


class AdminBillingView(APIView):
    required_permission = Perm.PLATFORM
    permission_classes = [IsPlatformAdmin]

    @extend_schema(responses=dict)
    def get(self, request, pk):
        return Response(billing_state(_tenant(pk)))

    @extend_schema(request=PlanSerializer, responses=dict, description="Change plan (downgrades must fit usage).")
    def patch(self, request, pk):
        tenant = _tenant(pk)
        data = _valid(PlanSerializer, request)
        actions.change_plan(tenant, acting_user=request.user, plan=data["plan"], interval=data.get("interval"))
        return Response(billing_state(tenant))


def _valid(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class AdminBillingActionView(APIView):
    required_permission = Perm.PLATFORM
    permission_classes = [IsPlatformAdmin]
    verb = None

    def post(self, request, pk):
        tenant = _tenant(pk)
        status = 200
        if self.verb == "payments":
            data = _valid(ManualPaymentSerializer, request)
            actions.record_manual_payment(tenant, acting_user=request.user, **data)
            status = 201
        elif self.verb == "extend-trial":
            actions.extend_trial(tenant, acting_user=request.user, days=_valid(ExtendTrialSerializer, request)["days"])
        elif self.verb == "comp":
            actions.comp_plan(tenant, acting_user=request.user, plan=_valid(PlanSerializer, request)["plan"])
        elif self.verb == "cancel-subscription":
            actions.cancel_subscription(tenant, acting_user=request.user)
        return Response(billing_state(tenant), status=status)


def admin_action(verb, request_serializer):
    """A view for one verb, with its own post (each with its own schema: decorating the shared method would give
    every verb the last one's body)."""
    def post(self, request, pk):
        return AdminBillingActionView.post(self, request, pk)

    post.__doc__ = f"{verb}: see the body."
    documented = extend_schema(request=request_serializer, responses={201 if verb == "payments" else 200: dict})(post)
    view = type(f"Admin{verb.title().replace('-', '')}View", (AdminBillingActionView,), {"verb": verb,
                                                                                          "post": documented})
    return view.as_view()
