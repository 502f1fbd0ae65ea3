"""Health. GET /health: the process answers (for load balancers; nothing checked, so they never flap on Redis).
GET /api/v1/health/detailed: Postgres and Redis answer, and the workers and session hosts are alive by their
heartbeats (core.heartbeats, written by config.heartbeat in every Celery worker): milliseconds, no broker round
trip. 200 "ok", or 503 "degraded" with what is missing; platform admins see the details."""
import time

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from backups.models import Backup
from core import heartbeats
from core.errors import CommonError, DomainError
from core.permissions import Perm, permission_required
from core.redis import client
from whatsapp.host.models import SessionLease
from whatsapp.host.queues import SHARED_QUEUE

DEFAULT_QUEUE = "default"


@permission_required(Perm.PUBLIC)
def liveness(request):
    return JsonResponse({"status": "ok"})


def _timed(check):
    started = time.perf_counter()
    try:
        detail, problem = check()
    except Exception as exc:  # each dependency reports its own failure instead of failing the endpoint
        detail, problem = None, f"{type(exc).__name__}: {exc}"
    # A check that found something and a problem with it keeps both (which workers are alive, and which queue none
    # serves); one that failed outright has only its problem.
    return {"ok": problem is None, "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "detail": problem if detail is None else detail, **({"problem": problem} if problem else {})}


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "reachable", None


def _redis():
    client().ping()
    return "reachable", None


def _process(beat):
    """A process as its heartbeat describes it: name, when it last wrote, its resident memory (MiB; a prefork
    worker's pool processes apart)."""
    return {"name": beat["name"], "seen_seconds_ago": round(time.time() - beat.get("at", 0), 1),
            "rss_mb": beat.get("rss_mb"), **({"children_rss_mb": beat["children_rss_mb"]}
                                              if beat.get("children_rss_mb") else {})}


def _workers():
    """Workers by the queues they consume: at least one for the default queue and one for the session hosts'."""
    workers = heartbeats.alive("worker")
    serving = {queue: [w["name"] for w in workers if queue in w.get("queues", [])]
               for queue in (DEFAULT_QUEUE, SHARED_QUEUE)}
    depth = dict(zip(serving, client().pipeline().llen(DEFAULT_QUEUE).llen(SHARED_QUEUE).execute()))
    detail = {"workers": [{**_process(w), "queues": w.get("queues", [])} for w in workers],
              "web": [_process(w) for w in heartbeats.alive("web")],
              "queue_depth": depth}
    missing = [queue for queue, names in serving.items() if not names]
    return detail, (f"no live worker consumes {', '.join(missing)}" if missing else None)


def _session_hosts():
    """The leases (sessions running per host, sessions waiting for one) and the hosts' own heartbeats (alive, how
    many sessions each runs, memory): two reads, no broker round trip."""
    now = timezone.now()
    held = dict(SessionLease.objects.exclude(host_id="").filter(lease_expires_at__gte=now)
                .values_list("host_id").annotate(n=Count("id")).order_by())
    waiting = SessionLease.objects.filter(Q(host_id="") | Q(lease_expires_at__lt=now)).count()
    alive = [{**_process(beat), "sessions": beat.get("sessions"), "leases": held.get(beat["name"], 0)}
             for beat in heartbeats.alive("host")]
    return {"hosts": sorted(held), "sessions_running": sum(held.values()), "sessions_waiting_for_a_host": waiting,
            "leases_by_host": held, "host_heartbeats": alive,
            "max_sessions": settings.WHATSAPP_MAX_SESSIONS}, None


def _last_backup():
    """The newest finished backup (informational: a failed backup is the backups' own alarm)."""
    backup = Backup.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
    if backup is None:
        return {"last": None}, None
    return {"last": {"id": backup.pk, "kind": backup.kind, "status": backup.status,
                     "finished_at": backup.finished_at.isoformat(),
                     "age_hours": round((timezone.now() - backup.finished_at).total_seconds() / 3600, 1)}}, None


CHECKS = {"database": _database, "redis": _redis, "workers": _workers, "session_hosts": _session_hosts,
          "backups": _last_backup}

HealthSerializer = inline_serializer("Health", {
    "status": serializers.ChoiceField(["ok", "degraded"]),
    "checks": serializers.DictField(required=False, help_text="Platform admins only: each check's ok, latency_ms "
                                                              "and detail (workers and web processes with their "
                                                              "memory, queue depth, session hosts and leases, the "
                                                              "last backup)."),
})


class DetailedHealthView(APIView):
    required_permission = Perm.PUBLIC
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: HealthSerializer, 503: OpenApiResponse(
        description="unavailable: a dependency is down or no live worker serves a queue (details.status degraded; "
                    "details.checks for platform admins)")})
    def get(self, request):
        checks = {name: _timed(check) for name, check in CHECKS.items()}
        body = {"status": "ok" if all(c["ok"] for c in checks.values()) else "degraded"}
        if request.user.is_authenticated and request.user.is_platform_admin:
            body["checks"] = checks
        if body["status"] == "ok":
            return Response(body)
        failing = [f"{name}: {check['problem']}" for name, check in checks.items() if not check["ok"]]
        raise DomainError(CommonError.UNAVAILABLE, "Degraded. " + "; ".join(failing), body)
