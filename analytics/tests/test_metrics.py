"""GET /metrics: Prometheus' text format read back by prometheus_client's own parser, figures summed across tenants
with bounded labels (a tenant label only with METRICS_PER_TENANT), HTTP requests counted, the token or the allowed
networks required (401 otherwise); GET /api/v1/health/detailed answers from heartbeats, fast, with the last backup.
"""
import time

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from .test_analytics_page import traffic


def scrape(client=None, **headers):
    response = (client or Client()).get("/metrics", secure=True, **headers)
    return response


def samples(response):
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_are_parsed_by_prometheus_and_summed_across_tenants(named, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    traffic(named.acme)
    traffic(named.globex, sent=2, received=0, failed=0)
    before = samples(scrape())
    Client().get("/api/v1/me", secure=True)  # one more API request (401 without a key)
    found = samples(scrape())
    assert found[("switchboard_sessions", (("state", "connected"),))] == 2
    assert found[("switchboard_messages_24h", (("direction", "out"), ("status", "delivered")))] == 5
    assert found[("switchboard_messages_24h", (("direction", "in"), ("status", "received")))] == 2
    assert found[("switchboard_messages_24h", (("direction", "out"), ("status", "failed")))] == 1
    key = ("switchboard_http_requests_total", (("kind", "api"), ("method", "GET"), ("status", "4xx")))
    assert found[key] == before.get(key, 0) + 1
    assert ("switchboard_queue_depth", (("queue", "default"),)) in found
    assert all("tenant" not in dict(labels) for _, labels in found)  # bounded: no tenant label by default

    settings.METRICS_PER_TENANT = True
    per_tenant = samples(scrape())
    assert per_tenant[("switchboard_sessions", (("state", "connected"), ("tenant", named.acme.schema_name)))] == 1


def test_metrics_need_the_token_or_an_allowed_network(named, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "s3cret-token"
    assert scrape().status_code == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    assert scrape(REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scrape(REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_detailed_health_is_fast_and_names_the_last_backup(named, api_as):
    from backups.models import Backup
    from core import heartbeats
    from whatsapp.host.queues import SHARED_QUEUE

    heartbeats.beat("worker", "test-worker", queues=["default", SHARED_QUEUE])  # as config.heartbeat writes it
    admin = api_as(named.admin)
    Backup.objects.create(kind="full", scope="all", status="succeeded", finished_at=time_now())
    admin.get("/api/v1/health/detailed")
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        response = admin.get("/api/v1/health/detailed")
        timings.append(time.perf_counter() - started)
    heartbeats.forget("worker", "test-worker")
    checks = response.json()["data"]["checks"]
    assert checks["backups"]["detail"]["last"]["status"] == "succeeded"
    assert "queue_depth" in checks["workers"]["detail"] and "hosts" in checks["session_hosts"]["detail"]
    assert sorted(timings)[2] < 0.25  # no broker round trip (a Celery ping cost a second)


def time_now():
    from django.utils import timezone

    return timezone.now()
