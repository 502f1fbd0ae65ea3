"""Alerts over the API (routes: urlpatterns below, included under /api/v1/): a workspace's own alert history
(GET /alerts, /alerts/{id}; another workspace's alert is 404) and its alert settings (GET|PATCH /alerts/settings:
which kinds it is told about and where; owners and admins change them, audited)."""
from django.urls import path
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, StrictSerializer, choice_param, field_with_schema, paginated
from core.errors import CommonError, DomainError
from core.permissions import Perm
from tenants.permissions import HasActiveTenant

from . import actions, selectors
from .errors import AlertError
from .models import MAX_TELEGRAM_CHATS, Alert, AlertSettings, Channel, Kind

TAGS = ["alerts"]
CHAT_ID_PATTERN = r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$"

NotificationsSerializer = inline_serializer("AlertNotification", {
    "at": serializers.DateTimeField(), "event": serializers.ChoiceField(choices=Alert.State.values),
    "channel": serializers.ChoiceField(choices=Channel.choices), "ok": serializers.BooleanField(),
    "error": serializers.CharField(allow_blank=True)}, many=True)


class AlertSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(source="rule", help_text="What the alert is about: " + ", ".join(Kind.values))
    told = serializers.SerializerMethodField(help_text="What this workspace's own channels were told.")

    class Meta:
        model = Alert
        fields = ["id", "kind", "state", "summary", "details", "started_at", "resolved_at", "told"]
        read_only_fields = fields

    @extend_schema_field(NotificationsSerializer)
    def get_told(self, alert):
        return selectors.told_workspace(alert)


SettingsSerializer = inline_serializer("AlertSettings", {
    "channels": serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices),
                                      help_text="Where the workspace's alerts go."),
    "kinds": serializers.ListField(child=serializers.ChoiceField(choices=Kind.choices),
                                   help_text="The alerts the workspace is told about."),
    "telegram_chat_ids": serializers.ListField(child=serializers.CharField()),
    "telegram_available": serializers.BooleanField(
        help_text="Whether this platform has a Telegram bot (the telegram channel needs it)."),
    "webhook_endpoints": serializers.IntegerField(
        min_value=0, help_text="Enabled webhook endpoints subscribed to alert.firing or alert.resolved: where the "
                               "webhook channel delivers."),
})


class _Text(serializers.CharField):
    """A string in the JSON body, not a number made one (the schema says string)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _list_of(enum, help_text, max_items):
    return field_with_schema(serializers.ListField, {
        "type": "array", "maxItems": max_items, "items": {"type": "string", "enum": list(enum)}},
        child=_Text(max_length=40), max_length=max_items, required=False, help_text=help_text)


class AlertSettingsWriteSerializer(StrictSerializer):
    channels = _list_of(Channel.values, "Where the workspace's alerts go (400 unknown_channel for another value; "
                                        "409 telegram_unavailable when the platform has no Telegram bot).", 10)
    kinds = _list_of(Kind.values, "The alerts the workspace is told about (400 unknown_alert_kind).", 10)
    telegram_chat_ids = field_with_schema(serializers.ListField, {
        "type": "array", "maxItems": MAX_TELEGRAM_CHATS, "items": {"type": "string", "pattern": CHAT_ID_PATTERN}},
        child=_Text(max_length=40, trim_whitespace=False), required=False,
        help_text=f"Telegram chats the platform's bot tells (a number, or a public channel's @name; at most "
                  f"{MAX_TELEGRAM_CHATS}: 400 invalid_chat_id, too_many_chat_ids; the telegram channel needs one: "
                  "400 chat_ids_required).")


class AlertSettingsView(APIView):
    required_permissions = {"GET": Perm.ALERTS_READ, "PATCH": Perm.ALERTS_MANAGE}
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]

    @extend_schema(tags=TAGS, operation_id="v1_alerts_settings_retrieve", responses=SettingsSerializer)
    def get(self, request):
        """Which alerts the workspace is told about and where (never chosen: every kind, by email)."""
        tenant = request._request.tenant
        return Response(selectors.settings_payload(tenant, AlertSettings.of(tenant)))

    @extend_schema(tags=TAGS, operation_id="v1_alerts_settings_partial_update", request=AlertSettingsWriteSerializer,
                   responses={200: SettingsSerializer,
                              403: OpenApiResponse(description="permission_denied: owners and admins only"),
                              409: OpenApiResponse(description="telegram_unavailable: no Telegram bot here")})
    def patch(self, request):
        """Change any of channels, kinds, telegram_chat_ids (audited as alerts.settings_updated with what
        changed). Platform admins are told every alert whatever the workspace chooses."""
        serializer = AlertSettingsWriteSerializer(data=request.data)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            raise DomainError(CommonError.VALIDATION_ERROR, f"{field}: {problems[0]}", serializer.errors)
        tenant = request._request.tenant
        chosen = actions.update_alert_settings(tenant, acting_user=request.user, **serializer.validated_data)
        return Response(selectors.settings_payload(tenant, chosen))


class AlertListView(APIView):
    required_permission = Perm.ALERTS_READ
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("state", {"type": "string", "enum": Alert.State.values},
                         description="Only firing or only resolved alerts (400 unknown_state)."),
        OpenApiParameter("kind", {"type": "string", "enum": Kind.values},
                         description="Only alerts of this kind (400 unknown_alert_kind)."),
        *PAGE_PARAMETERS,
    ], responses=AlertSerializer(many=True))
    def get(self, request):
        """The workspace's own alerts: firing first, then the newest."""
        state = choice_param(request, "state", Alert.State.values, AlertError.UNKNOWN_STATE)
        kind = choice_param(request, "kind", Kind.values, AlertError.UNKNOWN_KIND)
        alerts = selectors.history(tenant=request._request.tenant, state=state, kind=kind)
        return paginated(request, self, alerts, lambda alert: AlertSerializer(alert).data)


class AlertDetailView(APIView):
    required_permission = Perm.ALERTS_READ
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(tags=TAGS, responses={200: AlertSerializer,
                                         404: OpenApiResponse(description="not_found: no such alert here")})
    def get(self, request, pk):
        """One of the workspace's alerts (another workspace's, or the platform's own, is 404)."""
        alert = Alert.objects.filter(pk=pk, tenant=request._request.tenant).first()
        if alert is None:
            raise DomainError(CommonError.NOT_FOUND, "No such alert.")
        return Response(AlertSerializer(alert).data)


urlpatterns = [
    path("alerts", AlertListView.as_view(), name="api_alerts"),
    path("alerts/settings", AlertSettingsView.as_view(), name="api_alert_settings"),
    path("alerts/<int:pk>", AlertDetailView.as_view(), name="api_alert"),
]
