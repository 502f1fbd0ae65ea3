"""The operator's metrics: GET /api/v1/metrics… (JSON, in the envelope) and the platform Metrics page, for platform
admins only (404 for everyone else). Composed here, above the apps, because they show what two apps know: the
figures of every workspace (analytics.platform: rollups, sessions, queues, latency histograms) and the alerts
(alerts.models)."""
from django.db.models import Case, IntegerField, Value, When
from django.http import QueryDict
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts.models import Alert
from analytics import platform
from analytics.api import IsPlatformAdminElse404
from analytics.errors import AnalyticsError
from core.api import PAGE_PARAMETERS, choice_param, paginated, whole_number_param
from core.errors import CommonError, DomainError
from core.permissions import Perm, permission_required
from tenants.decorators import platform_admin_required

TAGS = ["metrics"]
POINTS_MAX = 168
POINTS_DEFAULT = {"hour": 24, "day": 30}
ALERTS_MAX = 100
ALERTS_DEFAULT = 20
ORDERS = ("desc", "asc")


def _int(**kwargs):
    return serializers.IntegerField(min_value=0, **kwargs)


def _rate(**kwargs):
    return serializers.FloatField(min_value=0, max_value=1, allow_null=True, **kwargs)


def _seconds(**kwargs):
    return serializers.FloatField(min_value=0, allow_null=True, **kwargs)


WINDOW = OpenApiParameter(
    "window", {"type": "integer", "minimum": 1, "maximum": platform.WINDOW_MAX_HOURS},
    description=f"Hours: the current UTC hour and the ones before it (default {platform.WINDOW_DEFAULT_HOURS}, at "
                f"most {platform.WINDOW_MAX_HOURS}; 400 invalid_window otherwise).")


def window_param(request):
    return whole_number_param(request, "window", low=1, high=platform.WINDOW_MAX_HOURS,
                              default=platform.WINDOW_DEFAULT_HOURS, code=AnalyticsError.INVALID_WINDOW)


MessagesSerializer = inline_serializer("PlatformMessages", {
    "sent": _int(help_text="Outgoing messages accepted (queued ones included), failed ones not."),
    "received": _int(), "failed": _int(), "pending": _int(help_text="Outgoing messages still queued or sending."),
    "volume": _int(help_text="sent + received"),
    "failure_rate": _rate(help_text="failed / (sent + failed); null when nothing was sent."),
})
# Classes made once: drf-spectacular names a component by its class, and two of one name would collide.
ReasonSerializer = type(inline_serializer("PlatformFailureReason", {"reason": serializers.CharField(),
                                                                    "count": _int()}))


def _reasons():
    return ReasonSerializer(many=True)
OverviewSerializer = inline_serializer("PlatformMetrics", {
    "window_hours": serializers.IntegerField(min_value=1), "since": serializers.DateTimeField(),
    "generated_at": serializers.DateTimeField(), "tenants": _int(help_text="Workspaces counted (active, suspended)."),
    "messages": MessagesSerializer,
    "sessions": inline_serializer("PlatformSessions", {
        "total": _int(), "active": _int(help_text="Connected now."),
        "by_state": serializers.DictField(child=_int()),
        "connections": _int(help_text="Connections made in the window."),
        "disconnections": _int(help_text="Connections dropped in the window (a reconnect's retries count once)."),
        "disconnect_rate": _seconds(help_text="disconnections / sessions connected at some time in the window "
                                              "(above 1 when numbers dropped more than once).")}),
    "errors": inline_serializer("PlatformErrors", {
        "total": _int(help_text="Outgoing messages failed."), "rate": _rate(),
        "reasons_since": serializers.DateField(help_text="by_reason counts from this UTC day (daily rollups)."),
        "by_reason": _reasons()}),
})
def _row_fields():
    return {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "slug": serializers.CharField(),
        "status": serializers.CharField(),
        "sent": _int(), "received": _int(), "failed": _int(), "pending": _int(), "volume": _int(),
        "failure_rate": _rate(), "sessions": _int(), "sessions_active": _int(), "disconnections": _int(),
        "queued": _int(), "oldest_queued_seconds": _seconds(),
    }


TenantRowSerializer = inline_serializer("PlatformTenantRow", _row_fields(), many=True)
TenantDetailSerializer = inline_serializer("PlatformTenantMetrics", {
    **_row_fields(),
    "window_hours": serializers.IntegerField(min_value=1), "since": serializers.DateTimeField(),
    "sessions_by_state": serializers.DictField(child=_int()), "connections": _int(), "disconnect_rate": _seconds(),
    "failures_by_reason": _reasons(),
    "open_alerts": inline_serializer("PlatformTenantAlert", {
        "id": serializers.IntegerField(), "rule": serializers.CharField(), "summary": serializers.CharField(),
        "started_at": serializers.DateTimeField()}, many=True),
})


def _latency(name):
    return inline_serializer(name, {
        "count": _int(help_text="Observations since the processes started."),
        "p50": _seconds(), "p95": _seconds(), "p99": _seconds()})


PerformanceSerializer = inline_serializer("PlatformPerformance", {
    "generated_at": serializers.DateTimeField(),
    "accept_seconds": _latency("PlatformAcceptLatency"),
    "queued_to_sent_seconds": _latency("PlatformQueuedToSentLatency"),
    "sent_to_delivered_seconds": _latency("PlatformSentToDeliveredLatency"),
    "queue": inline_serializer("PlatformQueue", {
        "messages_queued": _int(), "oldest_queued_seconds": _seconds(),
        "tasks_waiting": serializers.DictField(child=_int(), help_text="Celery tasks waiting per queue.")}),
    "webhooks": inline_serializer("PlatformWebhookLatency", {
        "hours": serializers.IntegerField(min_value=1), "count": _int(), "succeeded": _int(),
        "p50_ms": _seconds(), "p95_ms": _seconds()}),
})
TimeseriesSerializer = inline_serializer("PlatformTimeseries", {
    "metric": serializers.ChoiceField(platform.METRICS), "interval": serializers.ChoiceField(platform.INTERVALS),
    "points": inline_serializer("PlatformTimeseriesPoint", {
        "start": serializers.CharField(help_text="The UTC hour (date-time) or day (date) the point covers."),
        "value": serializers.FloatField(min_value=0, allow_null=True,
                                        help_text="null: error_rate of a bucket with nothing sent.")}, many=True),
})
RateSerializer = inline_serializer("PlatformRate", {
    "window_seconds": serializers.IntegerField(min_value=1),
    "per_minute": serializers.FloatField(min_value=0), "sent_per_minute": serializers.FloatField(min_value=0),
    "received_per_minute": serializers.FloatField(min_value=0),
    "last_minute": inline_serializer("PlatformRateLastMinute", {"sent": _int(), "received": _int(),
                                                                "total": _int()}),
})
def _alert_fields():
    return {
        "id": serializers.IntegerField(), "key": serializers.CharField(), "rule": serializers.CharField(),
        "state": serializers.ChoiceField(Alert.State.values), "summary": serializers.CharField(),
        "tenant": serializers.CharField(allow_null=True, help_text="The workspace's slug; null: the platform's own."),
        "details": serializers.DictField(), "started_at": serializers.DateTimeField(),
        "resolved_at": serializers.DateTimeField(allow_null=True),
    }


AlertSerializer = type(inline_serializer("PlatformAlert", _alert_fields()))
AlertsSerializer = inline_serializer("PlatformAlerts", {"open": AlertSerializer(many=True),
                                                        "recent": AlertSerializer(many=True)})


class PlatformMetricsView(APIView):
    permission_classes = [IsPlatformAdminElse404]
    required_permission = Perm.PLATFORM


class OverviewView(PlatformMetricsView):
    @extend_schema(tags=TAGS, parameters=[WINDOW], responses=OverviewSerializer)
    def get(self, request):
        """Platform admins: every workspace's messages (sent, received, failed), sessions (active now,
        connections and disconnections), errors (total, rate, by reason) over the window."""
        return Response(platform.overview(timezone.now(), window_param(request)))


SORT = OpenApiParameter("sort", {"type": "string", "enum": list(platform.SORTS)},
                        description="volume (default), failure_rate, sent, received, failed or name.")
ORDER = OpenApiParameter("order", {"type": "string", "enum": list(ORDERS)},
                         description="desc (default) or asc. Workspaces with no failure rate (nothing sent) come "
                                     "last either way.")


def sort_params(params):
    """(sort, descending) from a query string; 400 invalid_sort for an unknown one."""
    sort, order = params.get("sort"), params.get("order")
    if sort is not None and sort not in platform.SORTS:
        raise DomainError(AnalyticsError.INVALID_SORT, f"Unknown sort '{sort}'.", {"allowed": list(platform.SORTS)})
    if order is not None and order not in ORDERS:
        raise DomainError(AnalyticsError.INVALID_SORT, f"Unknown order '{order}'.", {"allowed": list(ORDERS)})
    return sort or "volume", (order or "desc") == "desc"


class TenantListView(PlatformMetricsView):
    @extend_schema(tags=TAGS, operation_id="v1_metrics_tenants_list",
                   parameters=[WINDOW, SORT, ORDER, *PAGE_PARAMETERS], responses=TenantRowSerializer)
    def get(self, request):
        """Platform admins: one row per workspace (active or suspended) over the window: volume, failure rate,
        sessions, disconnections, queue; sorted, paginated."""
        hours = window_param(request)
        sort, descending = sort_params(request.query_params)
        rows = platform.tenant_table(timezone.now(), hours, sort, descending)
        return paginated(request, self, rows, lambda row: row)


def _alert(alert):
    return {"id": alert.pk, "key": alert.key, "rule": alert.rule, "state": alert.state, "summary": alert.summary,
            "tenant": alert.tenant.slug if alert.tenant_id else None, "details": alert.details,
            "started_at": alert.started_at, "resolved_at": alert.resolved_at}


class TenantDetailView(PlatformMetricsView):
    @extend_schema(tags=TAGS, operation_id="v1_metrics_tenants_retrieve", parameters=[WINDOW],
                   responses=TenantDetailSerializer)
    def get(self, request, pk):
        """Platform admins: one workspace's figures over the window, its sessions by state, failures by reason
        and open alerts (404 for an id that is no active or suspended workspace)."""
        hours = window_param(request)
        detail = platform.tenant_detail(timezone.now(), hours, pk)
        if detail is None:
            raise DomainError(CommonError.NOT_FOUND, f"No active or suspended workspace {pk}.")
        open_alerts = Alert.objects.filter(tenant_id=pk, state=Alert.State.FIRING).order_by("-started_at", "-id")
        detail["open_alerts"] = [{"id": a.pk, "rule": a.rule, "summary": a.summary, "started_at": a.started_at}
                                 for a in open_alerts]
        return Response(detail)


class PerformanceView(PlatformMetricsView):
    @extend_schema(tags=TAGS, responses=PerformanceSerializer)
    def get(self, request):
        """Platform admins: send latency (the send API's answer, queued → sent, sent → delivered: p50/p95/p99 in
        seconds over what every process recorded since it started), messages queued and the oldest one's wait,
        Celery tasks waiting, the last hour's webhook delivery times."""
        return Response(platform.performance(timezone.now()))


class TimeseriesView(PlatformMetricsView):
    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("metric", {"type": "string", "enum": list(platform.METRICS)},
                         description="messages (default: sent + received), sent, received, failed, error_rate, "
                                     "connections or disconnections; 400 invalid_metric otherwise."),
        OpenApiParameter("interval", {"type": "string", "enum": list(platform.INTERVALS)},
                         description="hour (default) or day (UTC); 400 invalid_interval otherwise."),
        OpenApiParameter("points", {"type": "integer", "minimum": 1, "maximum": POINTS_MAX},
                         description="How many buckets, the current one last (default 24 hours or 30 days)."),
    ], responses=TimeseriesSerializer)
    def get(self, request):
        """Platform admins: one figure per UTC hour or day, oldest first."""
        metric = choice_param(request, "metric", platform.METRICS, AnalyticsError.INVALID_METRIC) or "messages"
        interval = choice_param(request, "interval", platform.INTERVALS,
                                AnalyticsError.INVALID_INTERVAL) or "hour"
        points = whole_number_param(request, "points", low=1, high=POINTS_MAX, default=POINTS_DEFAULT[interval])
        return Response({"metric": metric, "interval": interval,
                         "points": platform.timeseries(timezone.now(), metric, interval, points)})


class RateView(PlatformMetricsView):
    @extend_schema(tags=TAGS, responses=RateSerializer)
    def get(self, request):
        """Platform admins: messages per minute now (the last five minutes' average, and the last minute's
        count), sent and received."""
        return Response(platform.rate(platform.tenants(), timezone.now()))


def open_and_recent_alerts(limit):
    return (list(Alert.objects.select_related("tenant").filter(state=Alert.State.FIRING)
                 .order_by("-started_at", "-id")),
            list(Alert.objects.select_related("tenant").filter(state=Alert.State.RESOLVED)
                 .order_by("-resolved_at", "-id")[:limit]))


class AlertsView(PlatformMetricsView):
    @extend_schema(tags=TAGS, parameters=[
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": ALERTS_MAX},
                         description=f"How many resolved alerts, newest first (default {ALERTS_DEFAULT})."),
    ], responses=AlertsSerializer)
    def get(self, request):
        """Platform admins: every alert firing now (the platform's and the workspaces'), and the last ones
        resolved."""
        limit = whole_number_param(request, "limit", low=1, high=ALERTS_MAX, default=ALERTS_DEFAULT)
        firing, resolved = open_and_recent_alerts(limit)
        return Response({"open": [_alert(a) for a in firing], "recent": [_alert(a) for a in resolved]})


api_urlpatterns = [
    path("metrics", OverviewView.as_view(), name="api_metrics"),
    path("metrics/tenants", TenantListView.as_view(), name="api_metrics_tenants"),
    path("metrics/tenants/<int:pk>", TenantDetailView.as_view(), name="api_metrics_tenant"),
    path("metrics/performance", PerformanceView.as_view(), name="api_metrics_performance"),
    path("metrics/timeseries", TimeseriesView.as_view(), name="api_metrics_timeseries"),
    path("metrics/rate", RateView.as_view(), name="api_metrics_rate"),
    path("metrics/alerts", AlertsView.as_view(), name="api_metrics_alerts"),
]

# --- the page ------------------------------------------------------------------------------------------------

PAGE_WINDOWS = (1, 24, 168, 720)
PAGE_SIZE = 25
SORTABLE_COLUMNS = (("volume", "Volume"), ("failure_rate", "Failure rate"))
SORT_LABELS = (*SORTABLE_COLUMNS, ("sent", "Sent"), ("received", "Received"), ("failed", "Failed"), ("name", "Name"))


def _page_choice(request):
    """(window, sort, descending, page) from the query string; anything unknown falls back to the default (a page
    never answers 400 for a hand-edited address)."""
    raw = request.GET.get("window", "")
    window = int(raw) if raw.isdigit() and int(raw) in PAGE_WINDOWS else platform.WINDOW_DEFAULT_HOURS
    sort = request.GET.get("sort")
    sort = sort if sort in platform.SORTS else "volume"
    descending = request.GET.get("order") != "asc"
    raw_page = request.GET.get("page", "")
    page = int(raw_page) if raw_page.isdigit() and 0 < int(raw_page) < 100_000 else 1
    return window, sort, descending, page


def _query(**values):
    query = QueryDict(mutable=True)
    query.update({name: value for name, value in values.items() if value is not None})
    return "?" + query.urlencode()


@never_cache
@platform_admin_required
@permission_required(Perm.PLATFORM)
def metrics_page(request):
    """The platform's figures: cards, the per-workspace table (sorted by the server: ?sort=&order=, so it works
    without JavaScript), performance and the alerts firing. GET only."""
    now = timezone.now()
    window, sort, descending, page = _page_choice(request)
    reading = platform.Reading(now, window)  # read once for the cards, the table and the queue
    rows = platform.tenant_table(now, window, sort, descending, reading)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(page, pages)
    order = "desc" if descending else "asc"
    columns = []
    for key, label in SORTABLE_COLUMNS:
        active = key == sort
        next_order = ("asc" if descending else "desc") if active else "desc"
        columns.append({"key": key, "label": label, "active": active,
                        "aria_sort": ("descending" if descending else "ascending") if active else None,
                        "href": _query(window=window, sort=key, order=next_order)})
    firing = (Alert.objects.select_related("tenant").filter(state=Alert.State.FIRING)
              .annotate(platform_first=Case(When(tenant__isnull=True, then=Value(0)), default=Value(1),
                                            output_field=IntegerField()))
              .order_by("platform_first", "-started_at", "-id"))
    performance = platform.performance(now, reading)
    latencies = [("Send request answered", performance["accept_seconds"]),
                 ("Queued → sent", performance["queued_to_sent_seconds"]),
                 ("Sent → delivered", performance["sent_to_delivered_seconds"])]
    return render(request, "platform/metrics.html", {
        "overview": platform.overview(now, window, reading), "performance": performance, "latencies": latencies,
        "sort_label": dict(SORT_LABELS).get(sort, sort),
        "rate": platform.rate(reading.counted, now), "alerts": firing,
        "rows": rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE], "tenant_count": len(rows),
        "window": window, "windows": PAGE_WINDOWS, "sort": sort, "order": order, "columns": columns,
        "page": page, "pages": pages,
        "previous_href": _query(window=window, sort=sort, order=order, page=page - 1) if page > 1 else None,
        "next_href": _query(window=window, sort=sort, order=order, page=page + 1) if page < pages else None,
    })
