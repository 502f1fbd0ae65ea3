import time

from django.db import connection
from django.http import JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from config.celery import app


def liveness(request):
    """GET /health: the process answers. No dependencies checked, so a load balancer never flaps on Redis."""
    return JsonResponse({"status": "ok"})


def _timed(check):
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # each dependency reports its own failure instead of failing the endpoint
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return {"ok": ok, "latency_ms": round((time.perf_counter() - started) * 1000, 1), "detail": detail}


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "reachable"


def _redis():
    from django.conf import settings
    from redis import Redis

    Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    return "reachable"


def _celery():

    replies = app.control.ping(timeout=1.0)
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        raise RuntimeError("no Celery worker answered within 1 s")
    return {"workers": workers}


class DetailedHealthView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses=dict)
    def get(self, request):
        checks = {"database": _timed(_database), "redis": _timed(_redis), "celery": _timed(_celery)}
        healthy = all(c["ok"] for c in checks.values())
        body = {"status": "ok" if healthy else "degraded"}
        if request.user.is_authenticated and request.user.is_platform_admin:
            body["checks"] = checks
        return Response(body, status=200 if healthy else 503)
