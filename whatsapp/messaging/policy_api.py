"""The sending policy over the API: the tenant's blocked numbers and its per-number pacing.

GET/POST /api/v1/blocked-numbers, DELETE /api/v1/blocked-numbers/{id}, GET/PATCH /api/v1/pacing, and
GET /api/v1/sessions/{name}/queue (a session's sending queue under that pacing).
Every member reads; owners and admins change (403 permission_denied), and only while the tenant may write
(402 payment_required). Ids are the tenant's own: another tenant's id is a 404 like an unknown one.
"""
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, PageLimitPagination, StrictModelSerializer, StrictSerializer, field_with_schema
from core.errors import DomainError
from core.permissions import Perm
from core.phones import PATTERN as PHONE_PATTERN
from tenants.permissions import HasActiveTenant
from whatsapp.sessions.models import WhatsAppSession

from . import pacing, policy
from .errors import MessagingError
from .models import BlockedNumber

TAGS = ["sending policy"]


class BlockedNumberSerializer(StrictModelSerializer):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = BlockedNumber
        fields = ["id", "phone", "reason", "created_by", "created_at"]

    def get_created_by(self, blocked) -> str | None:

        if not blocked.created_by_id:
            return None
        user = User.objects.filter(pk=blocked.created_by_id).first()
        return user.email if user else None


class BlockNumberSerializer(StrictSerializer):
    phone = field_with_schema(serializers.CharField, {"type": "string", "pattern": PHONE_PATTERN},
                              help_text="International format (E.164), e.g. +14155550123; digits with the country code "
                                        "are read as one.")
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


def _policy_value(name):
    low, high = pacing.BOUNDS[name]
    return serializers.IntegerField(allow_null=True, required=False, min_value=low, max_value=high,
                                    help_text=f"{low}–{high}; null = the installation's default")


class PacingUpdateSerializer(StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    min_interval_ms = _policy_value("min_interval_ms")
    jitter_ms = _policy_value("jitter_ms")
    daily_cap = _policy_value("daily_cap")
    warmup_days = _policy_value("warmup_days")
    warmup_daily_cap = _policy_value("warmup_daily_cap")


_VALUES = {name: serializers.IntegerField() for name in pacing.FIELDS}
PacingSerializer = inline_serializer("PacingPolicy", fields={
    "enabled": serializers.BooleanField(),
    **{name: serializers.IntegerField(allow_null=True, help_text="null = the installation's default")
       for name in pacing.FIELDS},
    "installation_enabled": serializers.BooleanField(help_text="WHATSAPP_PACING_ENABLED: false turns pacing off "
                                                               "for every tenant"),
    "defaults": inline_serializer("PacingDefaults", fields=dict(_VALUES)),
    "effective": inline_serializer("PacingEffective", fields={"enabled": serializers.BooleanField(),
                                                             **_VALUES}),
    "updated_at": serializers.DateTimeField(allow_null=True),
})


def _tenant(request):
    return request._request.tenant


class SendingPolicyView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]


class BlockedNumberListView(SendingPolicyView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "POST": Perm.SETTINGS_MANAGE}

    @extend_schema(tags=TAGS, parameters=PAGE_PARAMETERS,
                   responses=BlockedNumberSerializer(many=True))
    def get(self, request):
        """The numbers this business never sends to (on top of the installation's), by number."""
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(BlockedNumber.objects.all(), request, view=self)
        return paginator.get_paginated_response(BlockedNumberSerializer(page, many=True).data)

    @extend_schema(tags=TAGS, request=BlockNumberSerializer, responses={
        201: BlockedNumberSerializer,
        400: OpenApiResponse(description="invalid_phone"),
        409: OpenApiResponse(description="already_blocked"),
    })
    def post(self, request):
        """Block a number (owner or admin): messages to it are refused with 400 blocked_recipient."""
        serializer = BlockNumberSerializer(data=request.data)
        if not serializer.is_valid():
            if "phone" in serializer.errors:
                raise DomainError(MessagingError.INVALID_PHONE,
                                  "Enter the number in international format, with the country "
                                  "code, e.g. +14155550123.", serializer.errors)
            raise exceptions.ValidationError(serializer.errors)
        blocked = policy.block_number(_tenant(request), acting_user=request.user,
                                       phone=serializer.validated_data["phone"],
                                       reason=serializer.validated_data["reason"])
        return Response(BlockedNumberSerializer(blocked).data, status=status.HTTP_201_CREATED)


class BlockedNumberDetailView(SendingPolicyView):
    required_permission = Perm.SETTINGS_MANAGE

    @extend_schema(tags=TAGS, responses={204: None, 404: OpenApiResponse(description="not_found")})
    def delete(self, request, pk):
        """Unblock a number (owner or admin)."""
        blocked = BlockedNumber.objects.filter(pk=pk).first()
        if blocked is None:
            raise exceptions.NotFound("No such blocked number.")
        policy.unblock_number(_tenant(request), blocked, acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PacingView(SendingPolicyView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "PATCH": Perm.SETTINGS_MANAGE}

    @extend_schema(tags=TAGS, responses=PacingSerializer)
    def get(self, request):
        """The per-number pacing policy: what the business set (null = the installation's default), the
        defaults and the effective values."""
        return Response(pacing.describe())

    @extend_schema(tags=TAGS, request=PacingUpdateSerializer, responses={
        200: PacingSerializer, 400: OpenApiResponse(description="invalid_pacing")})
    def patch(self, request):
        """Change the pacing policy (owner or admin); fields left out keep their value, null restores the
        installation's default."""
        if not isinstance(request.data, dict):
            raise DomainError(MessagingError.INVALID_PACING, "Send a JSON object with the fields to change.")
        unknown = sorted(set(request.data) - set(PacingUpdateSerializer().fields))
        if unknown:
            raise DomainError(MessagingError.INVALID_PACING, f"Unknown pacing field: {', '.join(unknown)}.",
                              {"fields": unknown})
        serializer = PacingUpdateSerializer(data=request.data, partial=True)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            raise DomainError(MessagingError.INVALID_PACING, f"{field}: {problems[0]}", serializer.errors)
        updated = policy.update_pacing_policy(_tenant(request), acting_user=request.user,
                                              changes=dict(serializer.validated_data))
        return Response(pacing.describe(updated))


QueueSerializer = inline_serializer("SessionQueue", fields={
    "pacing_enabled": serializers.BooleanField(),
    "queued": serializers.IntegerField(help_text="Outgoing messages not sent yet"),
    "waiting": serializers.IntegerField(help_text="Of those, waiting for their pacing slot"),
    "sending": serializers.IntegerField(),
    "next_send_at": serializers.DateTimeField(allow_null=True,
                                              help_text="Earliest time a new message of this number may go"),
    "next_queued_send_at": serializers.DateTimeField(allow_null=True,
                                                     help_text="When the next waiting message goes"),
    "sent_today": serializers.IntegerField(help_text="Since 00:00 UTC"),
    "daily_cap": serializers.IntegerField(allow_null=True, help_text="Today's cap (the warm-up cap while new)"),
    "day_resets_at": serializers.DateTimeField(),
    "warmup": inline_serializer("SessionWarmup", fields={
        "active": serializers.BooleanField(), "until": serializers.DateTimeField(allow_null=True),
        "daily_cap": serializers.IntegerField()}),
    "min_interval_ms": serializers.IntegerField(),
    "jitter_ms": serializers.IntegerField(),
})


class SessionQueueView(APIView):
    required_permission = Perm.SESSIONS_READ
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(tags=["sessions"], parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)],
                   responses=QueueSerializer)
    def get(self, request, name):
        """The session's sending queue: messages waiting, when the next one goes, sent today against the daily
        cap and the warm-up of a new number."""
        session = WhatsAppSession.objects.filter(name=name).first()
        if session is None:
            raise exceptions.NotFound(f"No session named '{name}'.")
        return Response(pacing.queue_stats(session))


# Included under /api/v1/ by config/urls.py.
urlpatterns = [
    path("blocked-numbers", BlockedNumberListView.as_view(), name="api_blocked_numbers"),
    path("blocked-numbers/<int:pk>", BlockedNumberDetailView.as_view(), name="api_blocked_number"),
    path("pacing", PacingView.as_view(), name="api_pacing"),
    path("sessions/<str:name>/queue", SessionQueueView.as_view(), name="api_session_queue"),
]
