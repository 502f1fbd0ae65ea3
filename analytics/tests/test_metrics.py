"""GET /metrics: Prometheus' text format read back by prometheus_client's own parser, figures summed across tenants
with bounded labels (a tenant label only with METRICS_PER_TENANT), HTTP requests counted, the token or the allowed
networks required (401 otherwise); GET /api/v1/health/detailed answers from heartbeats (never asking Celery) with the
hosts, their leases, the queue depth and the last backup.
"""
from datetime import timedelta

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


def test_detailed_health_answers_from_heartbeats_with_hosts_leases_queue_and_the_last_backup(named, api_as,
                                                                                              monkeypatch):
    from backups.models import Backup
    from config.celery import app
    from core import heartbeats
    from whatsapp.host.models import SessionLease
    from whatsapp.host.queues import SHARED_QUEUE

    def refuse(*args, **kwargs):
        raise AssertionError("health asked Celery (a ping costs a second and more)")

    monkeypatch.setattr(app.control, "ping", refuse)
    monkeypatch.setattr(app.control, "inspect", refuse)
    # As config.heartbeat, whatsapp.host.runtime and config.asgi write them.
    heartbeats.beat("worker", "test-worker", queues=["default", SHARED_QUEUE], **heartbeats.process_info())
    heartbeats.beat("host", "test-host:1:abc", sessions=2, provider="simulator", pid=1, host="test", rss_mb=123.4)
    heartbeats.beat("web", "test-web:2", pid=2, host="test", rss_mb=98.7)
    soon = time_now() + timedelta(seconds=30)
    SessionLease.objects.create(schema_name=named.acme.schema_name, session_id=1, host_id="test-host:1:abc",
                                lease_expires_at=soon)
    SessionLease.objects.create(schema_name=named.acme.schema_name, session_id=2, host_id="test-host:1:abc",
                                lease_expires_at=soon)
    SessionLease.objects.create(schema_name=named.acme.schema_name, session_id=3, host_id="")
    Backup.objects.create(kind="full", scope="all", status="succeeded", finished_at=time_now())
    try:
        response = api_as(named.admin).get("/api/v1/health/detailed")
    finally:
        for kind, name in (("worker", "test-worker"), ("host", "test-host:1:abc"), ("web", "test-web:2")):
            heartbeats.forget(kind, name)
    checks = response.json()["data"]["checks"]
    assert checks["backups"]["detail"]["last"]["status"] == "succeeded"
    workers = checks["workers"]["detail"]
    assert set(workers["queue_depth"]) == {"default", SHARED_QUEUE}
    assert next(w for w in workers["workers"] if w["name"] == "test-worker")["rss_mb"] > 10
    assert {w["name"]: w["rss_mb"] for w in workers["web"]}["test-web:2"] == 98.7
    hosts = checks["session_hosts"]["detail"]
    assert hosts["hosts"] == ["test-host:1:abc"] and hosts["leases_by_host"] == {"test-host:1:abc": 2}
    assert hosts["sessions_running"] == 2 and hosts["sessions_waiting_for_a_host"] == 1
    [host] = hosts["host_heartbeats"]
    assert (host["name"], host["sessions"], host["leases"], host["rss_mb"]) == ("test-host:1:abc", 2, 2, 123.4)


def test_a_degraded_worker_check_keeps_the_live_workers_beside_its_problem(named, api_as):
    from core import heartbeats

    for beat in heartbeats.alive("worker"):
        heartbeats.forget("worker", beat["name"])
    heartbeats.beat("worker", "test-default", queues=["default"], **heartbeats.process_info())
    try:
        response = api_as(named.admin).get("/api/v1/health/detailed")
    finally:
        heartbeats.forget("worker", "test-default")
    workers = response.json()["error"]["details"]["checks"]["workers"]
    assert response.status_code == 503 and workers["ok"] is False
    assert workers["problem"] == "no live worker consumes whatsapp"
    assert [w["name"] for w in workers["detail"]["workers"]] == ["test-default"]


def test_metrics_count_live_processes_and_their_memory_by_kind(named, settings):
    from core import heartbeats

    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    for kind in ("worker", "host", "web"):
        for beat in heartbeats.alive(kind):
            heartbeats.forget(kind, beat["name"])
    heartbeats.beat("worker", "w1", pid=1, host="t", rss_mb=100.0, children_rss_mb={"2": 300.0})
    heartbeats.beat("host", "h1", pid=3, host="t", rss_mb=50.0)
    try:
        found = samples(scrape())
    finally:
        heartbeats.forget("worker", "w1")
        heartbeats.forget("host", "h1")
    assert found[("switchboard_workers", (("kind", "worker"),))] == 1
    assert found[("switchboard_workers", (("kind", "host"),))] == 1
    assert found[("switchboard_workers", (("kind", "web"),))] == 0
    assert found[("switchboard_process_resident_memory_max_bytes", (("kind", "worker"),))] == 300 * 2**20
    assert found[("switchboard_process_resident_memory_bytes", (("kind", "worker"),))] == 400 * 2**20


def time_now():
    from django.utils import timezone

    return timezone.now()
