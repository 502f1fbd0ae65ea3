"""Prometheus metrics at GET /metrics (prometheus_client's text format).

Two kinds, both with bounded label sets (no tenant label unless METRICS_PER_TENANT=true):
- what every web process counts as it answers: HTTP requests by kind (api, page, static), method and status class,
  and their latency; kept in prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by settings),
  so a scrape of any daphne sums every process's;
- what the database and Redis know at scrape time (DatabaseCollector): sessions by state, messages of the last
  24 hours by direction and status (from the rollups), queued messages and the oldest one's age, webhook
  deliveries of the last 24 hours by outcome and dead letters, session leases held and waiting, live processes
  and their resident memory by kind (heartbeats: worker, host, web), Celery queue depth.

Access: `Authorization: Bearer <METRICS_TOKEN>`, or a client address in METRICS_ALLOWED_NETWORKS; anything else
(a wrong token included) is 401.
"""
import hmac
import ipaddress
import os
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from core import heartbeats
from core.permissions import Perm, permission_required
from core.redis import client
from tenants.models import Tenant
from whatsapp.host.models import SessionLease
from whatsapp.host.queues import SHARED_QUEUE
from whatsapp.messaging import latency

HTTP_REQUESTS = Counter("switchboard_http_requests_total", "HTTP requests answered.", ["kind", "method", "status"])
HTTP_LATENCY = Histogram("switchboard_http_request_duration_seconds", "Time to answer an HTTP request.", ["kind"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# The send API's answer time (a message accepted: validated, stored queued, the sender woken), the "accept latency"
# of the platform metrics; other routes only count in HTTP_LATENCY by kind.
ACCEPT_LATENCY = Histogram("switchboard_message_accept_seconds",
                           "Time to answer an accepted send request (POST /api/v1/messages and /messages/batch).",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SEND_ROUTES = {"api_messages", "api_messages_batch"}
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
COUNTED_STATUSES = (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED)


def request_kind(path):
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/static/"):
        return "static"
    return "page"


def observe(request, response, seconds):
    kind = request_kind(request.path_info)
    method = request.method if request.method in METHODS else "other"
    HTTP_REQUESTS.labels(kind, method, f"{response.status_code // 100}xx").inc()
    HTTP_LATENCY.labels(kind).observe(seconds)
    match = getattr(request, "resolver_match", None)
    if (request.method == "POST" and 200 <= response.status_code < 300 and match is not None
            and match.url_name in SEND_ROUTES):
        ACCEPT_LATENCY.observe(seconds)


class DatabaseCollector:
    """Figures read at scrape time, summed across tenants (or per tenant with METRICS_PER_TENANT)."""

    def collect(self):
        per_tenant = settings.METRICS_PER_TENANT
        labels = ["tenant"] if per_tenant else []
        schemas = list(Tenant.objects.filter(status__in=COUNTED_STATUSES).values_list("schema_name", flat=True))
        since = timezone.now() - timedelta(hours=24)

        def family(name, doc, extra, rows):
            metric = GaugeMetricFamily(name, doc, labels=labels + extra)
            totals = {}
            for schema, *values in rows:
                *keys, value = values
                key = tuple(([schema] if per_tenant else []) + [str(k) for k in keys])
                totals[key] = totals.get(key, 0) + float(value or 0)
            for key, value in sorted(totals.items()):
                metric.add_metric(list(key), value)
            return metric

        yield family("switchboard_sessions", "WhatsApp sessions by state.", ["state"], _rows_with(schemas, lambda s: (
            f"SELECT %s, status, count(*) FROM {s}.whatsapp_whatsappsession GROUP BY status"), lambda schema: [schema]))
        yield family("switchboard_messages_24h", "Messages created in the last 24 hours by direction and status.",
                     ["direction", "status"], _rows_with(schemas, lambda s: f"""
            SELECT %s, direction, status, sum(n) FROM (
              SELECT direction, status, count AS n FROM {s}.analytics_hourlyrollup WHERE hour >= %s
              UNION ALL SELECT direction, new_status, 1 FROM {s}.analytics_messagecounter
                WHERE new_status IS NOT NULL AND hour >= %s
              UNION ALL SELECT direction, old_status, -1 FROM {s}.analytics_messagecounter
                WHERE old_status IS NOT NULL AND hour >= %s) h GROUP BY 2, 3""", lambda schema: [
                schema, since, since, since]))
        queued = _rows_with(schemas, lambda s: f"""
            SELECT %s, count(*), EXTRACT(EPOCH FROM now() - min(created_at)) FROM {s}.whatsapp_message
            WHERE status = 'queued'""", lambda schema: [schema])
        yield family("switchboard_messages_queued", "Outgoing messages waiting to be sent.", [],
                     [(schema, count) for schema, count, _ in queued])
        oldest = GaugeMetricFamily("switchboard_messages_queued_oldest_seconds",
                                   "Age of the oldest message waiting to be sent.", labels=labels)
        ages = [(schema, age) for schema, _, age in queued if age is not None]
        if per_tenant:
            for schema, age in ages:
                oldest.add_metric([schema], float(age))
        else:
            oldest.add_metric([], max((float(age) for _, age in ages), default=0.0))
        yield oldest
        yield family("switchboard_webhook_deliveries_24h", "Webhook deliveries of the last 24 hours by outcome.",
                     ["status"], _rows_with(schemas, lambda s: f"""
            SELECT %s, status, count(*) FROM {s}.whatsapp_webhookdelivery WHERE created_at >= %s GROUP BY 2""",
                                            lambda schema: [schema, since]))
        yield family("switchboard_webhook_dead_letters", "Webhook deliveries dead-lettered (replayable).", [],
                     _rows_with(schemas, lambda s: f"""
            SELECT %s, count(*) FROM {s}.whatsapp_webhookdelivery WHERE status = 'dead'""", lambda schema: [schema]))

        now = timezone.now()
        leases = GaugeMetricFamily("switchboard_session_leases", "Session leases by state.", labels=["state"])
        leases.add_metric(["held"], SessionLease.objects.exclude(host_id="").filter(lease_expires_at__gte=now).count())
        leases.add_metric(["waiting"], SessionLease.objects.filter(host_id="").count()
                          + SessionLease.objects.filter(lease_expires_at__lt=now).count())
        yield leases
        workers = GaugeMetricFamily("switchboard_workers", "Live processes by kind (heartbeats).", labels=["kind"])
        largest = GaugeMetricFamily("switchboard_process_resident_memory_max_bytes",
                                    "The largest resident memory of one process of the kind (a worker's pool "
                                    "processes included), from the heartbeats.", labels=["kind"])
        total = GaugeMetricFamily("switchboard_process_resident_memory_bytes",
                                  "Resident memory of every process of the kind, summed, from the heartbeats.",
                                  labels=["kind"])
        for kind in ("worker", "host", "web"):
            beats = heartbeats.alive(kind)
            workers.add_metric([kind], len(beats))
            sizes = [float(size) for beat in beats
                     for size in (beat.get("rss_mb"), *(beat.get("children_rss_mb") or {}).values()) if size]
            largest.add_metric([kind], max(sizes, default=0.0) * 2**20)
            total.add_metric([kind], sum(sizes) * 2**20)
        yield workers
        yield largest
        yield total
        depth = GaugeMetricFamily("switchboard_queue_depth", "Celery tasks waiting per queue.", labels=["queue"])
        default_depth, shared_depth = client().pipeline().llen("default").llen(SHARED_QUEUE).execute()
        depth.add_metric(["default"], default_depth)
        depth.add_metric([SHARED_QUEUE], shared_depth)
        yield depth


def _rows_with(schemas, sql_for, params_for):
    if not schemas:
        return []
    parts, params = [], []
    for schema in schemas:
        parts.append(f"({sql_for(connection.ops.quote_name(schema))})")
        params.extend(params_for(schema))
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        return cursor.fetchall()


def _process_registry():
    """What the processes recorded themselves: every process's files in multiprocess mode, else this one's."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # here: it reads the directory's setting when imported

        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in (HTTP_REQUESTS, HTTP_LATENCY, ACCEPT_LATENCY, *latency.HISTOGRAMS):
            registry.register(metric)
    return registry


def _registry():
    registry = _process_registry()
    registry.register(DatabaseCollector())
    return registry


def recorded_families():
    """The metric families the processes recorded (HTTP counts and the latency histograms), without the
    database's figures: what the platform metrics API reads its latencies from."""
    return list(_process_registry().collect())


def _allowed(request):
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if given:
        return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in settings.METRICS_ALLOWED_NETWORKS)


@permission_required(Perm.PUBLIC)  # its own access rule: the token or the allowed networks (_allowed)
def metrics_view(request):
    if not _allowed(request):
        response = HttpResponse("401 Unauthorized: send Authorization: Bearer <METRICS_TOKEN>.\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
