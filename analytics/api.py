"""Analytics over the API (routes: urlpatterns below, included under /api/v1/).

Every member of a workspace whose plan includes analytics reads its figures (403 feature_not_in_plan otherwise)
and records custom events; figures come from the rollups (analytics.selectors), days in the workspace's time zone.
DELETE /analytics/cleanup is for platform admins (404 for anyone else). A session name of another tenant is 404.
"""
import json
import re
from datetime import date, timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import transaction
from django.http import Http404
from django.urls import path
from django.utils import timezone
from django_tenants.utils import schema_context
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actions import record
from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, StrictSerializer, field_with_schema, paginated, whole_number_param
from core.errors import CommonError, DomainError
from core.permissions import Perm
from core.schema import NO_NUL
from tenants.models import Tenant
from tenants.permissions import HasActiveTenant
from whatsapp.sessions import api as sessions_api
from whatsapp.sessions.actions import NAME_PATTERN
from whatsapp.sessions.models import WhatsAppSession

from . import selectors, usage
from .access import require_analytics
from .errors import AnalyticsError
from .models import Event
from .tasks import COUNTED_STATUSES, purge_events

TAGS = ["analytics"]
EVENT_DATA_MAX_BYTES = 8 * 1024
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
TRENDS_MAX_DAYS = 365
CLEANUP_MAX_DAYS = 3650


def _int(**kwargs):
    return serializers.IntegerField(min_value=0, **kwargs)


def _rate():
    return serializers.FloatField(min_value=0, max_value=1, allow_null=True,
                                  help_text="From 0 to 1; null when there is nothing to divide by.")


CountsSerializer = inline_serializer("AnalyticsCounts", {
    "sent": _int(help_text="Outgoing messages accepted for sending (queued ones included), failed ones not."),
    "received": _int(), "failed": _int(), "pending": _int(help_text="Outgoing messages still queued or sending."),
})
LatencySerializer = inline_serializer("AnalyticsLatency", {
    "count": _int(help_text="Messages measured."),
    "p50_seconds": serializers.FloatField(allow_null=True), "p95_seconds": serializers.FloatField(allow_null=True),
})
DashboardSerializer = inline_serializer("AnalyticsDashboard", {
    "overview": inline_serializer("AnalyticsOverview", {
        "time_zone": serializers.CharField(), "generated_at": serializers.DateTimeField(),
        "sessions": _int(), "sessions_active": _int(), "contacts": _int(), "conversations": _int()}),
    "message_stats": inline_serializer("AnalyticsMessageStats", {
        "today": CountsSerializer, "week": CountsSerializer, "month": CountsSerializer,
        "delivery_rate": _rate(), "read_rate": _rate(),
        "failures_by_reason": inline_serializer("AnalyticsFailureReason", {
            "reason": serializers.CharField(), "count": _int()}, many=True),
        "latency": inline_serializer("AnalyticsSendLatency", {
            "hours": _int(help_text="Outgoing messages accepted in this many last hours."),
            "accept_to_sent": LatencySerializer, "sent_to_delivered": LatencySerializer})}),
    "session_stats": inline_serializer("AnalyticsSessionStats", {
        "total": _int(), "active": _int(),
        "by_state": serializers.DictField(child=_int(), help_text="Sessions per state (every state named).")}),
    "hourly_activity": inline_serializer("AnalyticsHourCell", {
        "weekday": serializers.IntegerField(min_value=0, max_value=6, help_text="0 is Monday"),
        "hour": serializers.IntegerField(min_value=0, max_value=23), "sent": _int(), "received": _int()},
        many=True),
    "top_contacts": inline_serializer("AnalyticsTopContact", {
        "chat_jid": serializers.CharField(), "name": serializers.CharField(), "phone": serializers.CharField(),
        "sent": _int(), "received": _int(), "total": _int()}, many=True),
    "conversation_stats": inline_serializer("AnalyticsConversationStats", {
        "total": _int(), "unread": _int(), "active_7d": _int(),
        "first_response": inline_serializer("AnalyticsFirstResponse", {
            "count": _int(),
            "average_seconds": serializers.FloatField(min_value=0, allow_null=True),
            "median_seconds": serializers.FloatField(min_value=0, allow_null=True)})}),
    "webhook_health": inline_serializer("AnalyticsWebhookHealth", {
        "days": _int(), "succeeded": _int(), "retrying": _int(), "dead": _int(), "pending": _int(),
        "success_rate": _rate(), "p95_ms": serializers.FloatField(min_value=0, allow_null=True),
        "dead_letters": _int(help_text="Deliveries dead-lettered, all time (replay them from the webhooks API).")}),
})
TrendsSerializer = inline_serializer("AnalyticsTrends", {
    "days": serializers.IntegerField(min_value=1, max_value=TRENDS_MAX_DAYS),
    "time_zone": serializers.CharField(),
    "session": serializers.CharField(allow_null=True),
    "series": inline_serializer("AnalyticsTrendDay", {
        "date": serializers.DateField(), "sent": _int(), "received": _int(), "failed": _int()}, many=True),
})


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "session_name", "event_type", "event_data", "created_at"]
        read_only_fields = fields


def _flat_values(data):
    wrong = [name for name, value in data.items() if not isinstance(value, str | int | float | bool) or value is None]
    if wrong:
        raise serializers.ValidationError(f"'{wrong[0]}': a property is a string, a number or a boolean.")


class EventWriteSerializer(StrictSerializer):
    event_type = field_with_schema(serializers.CharField, {"type": "string", "pattern": EVENT_TYPE_PATTERN},
                                   max_length=64, validators=[RegexValidator(EVENT_TYPE_PATTERN)],
                                   help_text="Your name for the event: letters, digits, _ . : -")
    session_name = field_with_schema(serializers.CharField, {"type": "string", "pattern": NAME_PATTERN},
                                     required=False, max_length=64, validators=[RegexValidator(NAME_PATTERN)],
                                     help_text="A session of this workspace the event is about (404 if none).")
    event_data = field_with_schema(
        serializers.DictField, {"type": "object", "additionalProperties": {"anyOf": [
            {"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"}]}},
        required=False, default=dict, validators=[_flat_values],
        help_text=f"Properties of the event: names to strings, numbers or booleans, at most {EVENT_DATA_MAX_BYTES} "
                  "bytes as compact JSON (413 event_too_large beyond).")


class AnalyticsView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]
    required_permission = Perm.ANALYTICS_READ

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require_analytics(request._request.tenant)


def _pattern_param(request, name, pattern):
    """A text query parameter that must match `pattern` when given (400 validation_error otherwise)."""
    value = request.query_params.get(name)
    if value is not None and not re.fullmatch(pattern, value):
        raise DomainError(CommonError.VALIDATION_ERROR, f"{name} must match {pattern}.", {name: [pattern]})
    return value


def _session_named(name):
    session = WhatsAppSession.objects.filter(name=name).first()
    if session is None:
        raise DomainError(CommonError.NOT_FOUND, f"No session '{name}'.")
    return session


SESSION_FILTER = OpenApiParameter("session", {"type": "string", "pattern": NAME_PATTERN},
                                  description="Only this session's messages (404 when it is not this workspace's).")


class DashboardView(AnalyticsView):
    @extend_schema(tags=TAGS, responses=DashboardSerializer)
    def get(self, request):
        """Everything the Analytics page shows: messages today, this week and this month (the workspace's time
        zone), delivery and read rates and failures by reason (last 30 days), sessions by state, contacts,
        conversations and first response times, the weekday × hour activity of the last 30 days, top contacts
        of this month,
        webhook health."""
        return Response(selectors.dashboard(request._request.tenant))


class TrendsView(AnalyticsView):
    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("days", {"type": "integer", "minimum": 1, "maximum": TRENDS_MAX_DAYS},
                         description="How many days back, today included (default 7)."),
        SESSION_FILTER,
    ], responses=TrendsSerializer)
    def get(self, request):
        """Messages per day (sent, received, failed), oldest first, in the workspace's time zone."""
        tenant = request._request.tenant
        days = whole_number_param(request, "days", low=1, high=TRENDS_MAX_DAYS, default=7,
                                  code=AnalyticsError.INVALID_DAYS)
        name = _pattern_param(request, "session", NAME_PATTERN)
        session = _session_named(name) if name is not None else None
        zone = selectors.zone_of(tenant)
        return Response({"days": days, "time_zone": str(zone), "session": session.name if session else None,
                         "series": selectors.trends(zone, days, session.pk if session else None)})


class SessionActivityView(sessions_api.SessionActivityView):
    """The session activity log (the same as GET /api/v1/sessions/{name}/activity), under analytics."""

    @extend_schema(tags=TAGS, operation_id="v1_analytics_sessions_activity_list", parameters=[
        sessions_api.NAME_PARAMETER,
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": sessions_api.ACTIVITY_MAX_LIMIT},
                         description=f"Default {sessions_api.ACTIVITY_DEFAULT_LIMIT}, at most "
                                     f"{sessions_api.ACTIVITY_MAX_LIMIT}."),
    ], responses=sessions_api.SessionActivitySerializer(many=True))
    def get(self, request, name):
        return super().get(request, name)


class EventListView(AnalyticsView):
    required_permissions = {"GET": Perm.ANALYTICS_READ, "POST": Perm.ANALYTICS_EVENTS}

    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("event_type", {"type": "string", "pattern": EVENT_TYPE_PATTERN},
                         description="Only events of this type."),
        OpenApiParameter("session_name", {"type": "string", "pattern": NAME_PATTERN},
                         description="Only events about this session."),
        *PAGE_PARAMETERS,
    ], responses=EventSerializer(many=True))
    def get(self, request):
        """Custom events, newest first (kept ANALYTICS_RETENTION_DAYS days)."""
        events = Event.objects.all()
        for name, pattern in (("event_type", EVENT_TYPE_PATTERN), ("session_name", NAME_PATTERN)):
            value = _pattern_param(request, name, pattern)
            if value is not None:
                events = events.filter(**{name: value})
        return paginated(request, self, events, lambda event: EventSerializer(event).data)

    @extend_schema(tags=TAGS, request=EventWriteSerializer, responses={201: EventSerializer})
    def post(self, request):
        """Record a custom event (what your software wants counted beside messages). 413 event_too_large when
        event_data is over 8 KB as compact JSON; 404 when session_name is not a session of this workspace."""
        serializer = EventWriteSerializer(data=request.data)
        if not serializer.is_valid():
            raise DomainError(CommonError.VALIDATION_ERROR, "Invalid event.", serializer.errors)
        data = serializer.validated_data
        size = len(json.dumps(data["event_data"], separators=(",", ":"), ensure_ascii=False).encode())
        if size > EVENT_DATA_MAX_BYTES:
            raise DomainError(AnalyticsError.EVENT_TOO_LARGE,
                              f"event_data is {size} bytes; at most {EVENT_DATA_MAX_BYTES} are kept.",
                              {"max_bytes": EVENT_DATA_MAX_BYTES, "bytes": size})
        session_name = data.get("session_name", "")
        if session_name:
            _session_named(session_name)
        event = Event.objects.create(event_type=data["event_type"], session_name=session_name,
                                     event_data=data["event_data"])
        return Response(EventSerializer(event).data, status=201)


class IsPlatformAdminElse404(permissions.BasePermission):
    """Invisible to everyone but platform admins (404), after a method the view does not have (405)."""

    def has_permission(self, request, view):
        if not hasattr(view, request.method.lower()):
            return True  # DRF answers 405 next
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not user.is_platform_admin:
            raise Http404
        return True


class CleanupView(APIView):
    permission_classes = [IsPlatformAdminElse404]
    required_permission = Perm.PLATFORM

    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("days", {"type": "integer", "minimum": 1, "maximum": CLEANUP_MAX_DAYS},
                         description="Delete custom events older than this many days (default "
                                     "ANALYTICS_RETENTION_DAYS)."),
    ], responses=inline_serializer("AnalyticsCleanup", {
        "days": serializers.IntegerField(min_value=1), "deleted": _int(),
        "tenants": _int(help_text="Workspaces that had events to delete.")}))
    def delete(self, request):
        """Platform admins: delete every workspace's custom events older than `days` days now (beat does it
        hourly with ANALYTICS_RETENTION_DAYS). Rollups are kept."""
        days = whole_number_param(request, "days", low=1, high=CLEANUP_MAX_DAYS,
                                  default=settings.ANALYTICS_RETENTION_DAYS, code=AnalyticsError.INVALID_DAYS)
        deleted = touched = 0
        for tenant in Tenant.objects.filter(status__in=COUNTED_STATUSES).order_by("pk"):
            with schema_context(tenant.schema_name), transaction.atomic():
                count = purge_events(days)
                if count:
                    record("analytics.events_purged", actor=request.user, target=tenant, tenant=tenant,
                           after={"days": days, "deleted": count})
            deleted += count
            touched += bool(count)
        return Response({"days": days, "deleted": deleted, "tenants": touched})


USAGE_MAX_DAYS = 366
USAGE_DEFAULT_DAYS = 30
UsageDaySerializer = inline_serializer("UsageDay", {
    "date": serializers.DateField(), "api_requests": _int(), "messages_sent": _int(), "messages_received": _int(),
    "media_bytes": _int(), "webhook_deliveries": _int()}, many=True)
UsageSerializer = inline_serializer("Usage", {
    "from": serializers.DateField(), "to": serializers.DateField(), "time_zone": serializers.CharField(),
    "totals": inline_serializer("UsageTotals", {
        "api_requests": _int(), "messages_sent": _int(), "messages_received": _int(), "media_bytes": _int(),
        "webhook_deliveries": _int()}),
    "days": UsageDaySerializer,
    "api_keys": inline_serializer("UsageApiKey", {
        "id": serializers.IntegerField(allow_null=True, help_text="null: requests of the signed-in pages"),
        "name": serializers.CharField(), "prefix": serializers.CharField(allow_blank=True),
        "requests": _int()}, many=True),
    "plan": inline_serializer("UsagePlan", {
        "code": serializers.CharField(allow_null=True), "name": serializers.CharField(allow_null=True),
        "max_sessions": serializers.IntegerField(allow_null=True, help_text="-1: no limit"),
        "sessions": _int(), "max_users": serializers.IntegerField(allow_null=True), "users": _int(),
        "messages_per_minute": serializers.IntegerField(allow_null=True)}),
})


def _date_param(request, name, default):
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return date.fromisoformat(raw) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw) else None
    except ValueError:
        return None


class UsageView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]
    required_permission = Perm.ANALYTICS_READ

    @extend_schema(tags=["usage"], parameters=[
        OpenApiParameter("from", {"type": "string", "format": "date"},
                         description=f"First day (the workspace's time zone); default {USAGE_DEFAULT_DAYS - 1} "
                                     "days before `to`."),
        OpenApiParameter("to", {"type": "string", "format": "date"}, description="Last day; default today."),
    ], responses=UsageSerializer)
    def get(self, request):
        """The workspace's usage per day and in total (API requests, messages sent and received, media bytes,
        webhook deliveries), API requests per key, and the plan's limits beside what is in use. At most
        366 days, within the last five years (400 invalid_range)."""
        tenant = request._request.tenant
        today = timezone.now().astimezone(selectors.zone_of(tenant)).date()
        last = _date_param(request, "to", today)
        first = _date_param(request, "from", (last or today) - timedelta(days=USAGE_DEFAULT_DAYS - 1))
        if first is None or last is None:
            raise DomainError(CommonError.VALIDATION_ERROR, "from and to are dates: YYYY-MM-DD.")
        if not (today - timedelta(days=5 * 366) <= first <= last <= today + timedelta(days=1)) or (
                (last - first).days >= USAGE_MAX_DAYS):
            raise DomainError(AnalyticsError.INVALID_RANGE,
                              f"from must not be after to, the range at most {USAGE_MAX_DAYS} days, within the last "
                              "five years.", {"from": first.isoformat(), "to": last.isoformat()})
        return Response(usage.usage(tenant, first, last))


urlpatterns = [
    path("usage", UsageView.as_view(), name="api_usage"),
    path("analytics/dashboard", DashboardView.as_view(), name="api_analytics_dashboard"),
    path("analytics/trends", TrendsView.as_view(), name="api_analytics_trends"),
    path("analytics/sessions/<str:name>/activity", SessionActivityView.as_view(), name="api_analytics_activity"),
    path("analytics/events", EventListView.as_view(), name="api_analytics_events"),
    path("analytics/cleanup", CleanupView.as_view(), name="api_analytics_cleanup"),
]
