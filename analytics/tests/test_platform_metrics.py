"""The platform's metrics (GET /api/v1/metrics… and /platform/metrics/): every workspace's figures from the rollups,
sessions' connections and drops from their activity, latencies from the processes' histograms, the alerts firing;
platform admins only (404 for everyone else, signed in or by key); bad parameters answered 400 with a code; the page
sorts on the server (?sort=&order=) and pages.

alice owns Acme, bob is a member of Acme, carol owns Globex, admin is a platform admin.
"""
import math
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from alerts.models import Alert
from analytics import metrics, platform, rollups
from tenants.models import Tenant
from whatsapp.messaging import latency
from whatsapp.models import Message
from whatsapp.sessions.models import SessionActivity, WhatsAppSession
from whatsapp.tests.support import error, ok

from .test_analytics_page import traffic

V1 = "/api/v1/metrics"


@pytest.fixture
def admin(named, api_as):
    return api_as(named.admin)


def two_tenants(named):
    """Acme: 3 sent, 2 received, 1 failed (volume 5, failure rate 1/4); Globex: 2 sent (volume 2, rate 0)."""
    acme = traffic(named.acme)
    globex = traffic(named.globex, sent=2, received=0, failed=0)
    return acme, globex


def test_global_figures_sum_every_workspace_from_the_rollups(named, admin):
    acme, _ = two_tenants(named)
    with tenant_context(named.acme):  # a change not folded yet counts too
        Message.objects.create(session=acme, direction="out", chat_jid="x@s.whatsapp.net", status="failed",
                               failure_reason="timeout: no answer")
    data = ok(admin.get(V1))
    assert data["window_hours"] == 24 and data["tenants"] == 2
    assert data["messages"] == {"sent": 5, "received": 2, "failed": 2, "pending": 0, "volume": 7,
                                "failure_rate": round(2 / 7, 4)}
    assert data["sessions"]["active"] == 2 and data["sessions"]["by_state"] == {"connected": 2}
    assert data["errors"]["total"] == 2 and data["errors"]["rate"] == round(2 / 7, 4)
    assert data["errors"]["by_reason"] == [{"reason": "not_on_whatsapp: no such number", "count": 1},
                                           {"reason": "timeout: no answer", "count": 1}]


def test_the_window_counts_whole_utc_hours_and_has_bounds(named, admin):
    session = traffic(named.acme, sent=0, received=0, failed=0)
    with tenant_context(named.acme):
        Message.objects.create(session=session, direction="out", chat_jid="x@s.whatsapp.net", status="sent",
                               created_at=timezone.now() - timedelta(hours=30))
        rollups.fold()
    assert ok(admin.get(V1))["messages"]["sent"] == 0
    assert ok(admin.get(f"{V1}?window=48"))["messages"]["sent"] == 1
    for bad in ("0", "2161", "x", "1.5", "-1"):
        error(admin.get(f"{V1}?window={bad}"), 400, "invalid_window")


def test_only_platform_admins_see_the_metrics(named, api_as, client):
    urls = [V1, f"{V1}/tenants", f"{V1}/tenants/{named.acme.pk}", f"{V1}/performance", f"{V1}/timeseries",
            f"{V1}/rate", f"{V1}/alerts"]
    alice = api_as(named.alice)
    client.force_login(named.bob)
    for url in urls:
        error(alice.get(url), 404, "not_found")
        assert client.get(url).status_code == 404
    client.force_login(named.admin)
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert client.get("/platform/metrics/").status_code == 200
    client.force_login(named.alice)
    assert client.get("/platform/metrics/").status_code in (403, 404)


def test_tenant_table_sorts_by_volume_and_failure_rate_and_pages(named, admin, plans):
    two_tenants(named)
    rows = ok(admin.get(f"{V1}/tenants"))
    assert [r["slug"] for r in rows] == ["acme", "globex"]
    acme = rows[0]
    assert (acme["volume"], acme["sent"], acme["received"], acme["failed"], acme["failure_rate"]) == (5, 3, 2, 1, 0.25)
    assert acme["sessions"] == 1 and acme["sessions_active"] == 1 and acme["queued"] == 0
    assert [r["slug"] for r in ok(admin.get(f"{V1}/tenants?order=asc"))] == ["globex", "acme"]
    assert [r["slug"] for r in ok(admin.get(f"{V1}/tenants?sort=failure_rate"))] == ["acme", "globex"]
    assert [r["slug"] for r in ok(admin.get(f"{V1}/tenants?sort=failure_rate&order=asc"))] == ["globex", "acme"]
    assert [r["slug"] for r in ok(admin.get(f"{V1}/tenants?sort=name&order=asc"))] == ["acme", "globex"]
    page = admin.get(f"{V1}/tenants?limit=1&page=2").json()
    assert [r["slug"] for r in page["data"]] == ["globex"]
    assert page["pagination"] == {"page": 2, "limit": 1, "total": 2, "pages": 2}
    error(admin.get(f"{V1}/tenants?sort=popularity"), 400, "invalid_sort")
    error(admin.get(f"{V1}/tenants?order=sideways"), 400, "invalid_sort")
    error(admin.get(f"{V1}/tenants?limit=0"), 400, "validation_error")


def test_a_workspace_that_sent_nothing_sorts_below_every_failure_rate(named, admin):
    traffic(named.acme, sent=0, received=3, failed=0)
    traffic(named.globex, sent=4, received=0, failed=0)
    for order in ("desc", "asc"):
        rows = ok(admin.get(f"{V1}/tenants?sort=failure_rate&order={order}"))
        assert [(r["slug"], r["failure_rate"]) for r in rows] == [("globex", 0.0), ("acme", None)]


def test_one_workspace_in_detail_and_unknown_or_uncounted_ones_are_404(named, admin):
    two_tenants(named)
    Alert.objects.create(key=f"session_down:{named.acme.pk}:1", rule="session_down", tenant=named.acme,
                         summary="Session acme-desk is disconnected")
    # This hour and the one before: the traffic is at most 30 minutes old.
    data = ok(admin.get(f"{V1}/tenants/{named.acme.pk}?window=2"))
    assert data["id"] == named.acme.pk and data["volume"] == 5 and data["window_hours"] == 2
    assert data["sessions_by_state"] == {"connected": 1}
    assert data["failures_by_reason"] == [{"reason": "not_on_whatsapp: no such number", "count": 1}]
    assert [a["rule"] for a in data["open_alerts"]] == ["session_down"]
    error(admin.get(f"{V1}/tenants/999999"), 404, "not_found")
    Tenant.objects.filter(pk=named.globex.pk).update(status=Tenant.Status.PENDING)
    error(admin.get(f"{V1}/tenants/{named.globex.pk}"), 404, "not_found")
    assert [r["slug"] for r in ok(admin.get(f"{V1}/tenants"))] == ["acme"]


def activity(session, *kinds_and_minutes_ago):
    now = timezone.now()
    for kind, minutes in kinds_and_minutes_ago:
        SessionActivity.objects.create(session=session, kind=kind, created_at=now - timedelta(minutes=minutes))


def test_connections_and_drops_come_from_the_activity_log_and_retries_count_once(named, admin):
    acme, globex = two_tenants(named)
    with tenant_context(named.acme):
        activity(acme, ("connected", 50), ("reconnecting", 40), ("reconnecting", 39), ("connected", 30),
                 ("disconnected", 20), ("qr_issued", 10), ("connected", 5), ("connected", 60 * 30))
    with tenant_context(named.globex):
        other = WhatsAppSession.objects.create(name="spare", status="disconnected")
        activity(other, ("connected", 61 * 30), ("logged_out", 45))  # connected before the window, dropped in it
    sessions = ok(admin.get(V1))["sessions"]
    assert sessions["connections"] == 3 and sessions["disconnections"] == 3
    # Connected at some time in the window: acme's desk, globex's desk (connected now) and its spare (dropped).
    assert sessions["disconnect_rate"] == 1.0
    series = ok(admin.get(f"{V1}/timeseries?metric=disconnections&interval=day&points=2"))
    assert sum(p["value"] for p in series["points"]) == 3


def test_timeseries_per_hour_and_day_and_bad_names_are_400(named, admin):
    session = traffic(named.acme, sent=0, received=0, failed=0)
    now = timezone.now()
    with tenant_context(named.acme):
        for hours_ago, status in ((0, "sent"), (0, "failed"), (2, "delivered"), (2, "delivered"), (50, "read")):
            Message.objects.create(session=session, direction="out", chat_jid="x@s.whatsapp.net", status=status,
                                   created_at=now - timedelta(hours=hours_ago))
        rollups.fold()
    hourly = ok(admin.get(f"{V1}/timeseries?metric=sent&interval=hour&points=3"))
    assert hourly["metric"] == "sent" and hourly["interval"] == "hour"
    assert [p["value"] for p in hourly["points"]] == [2, 0, 1]
    assert hourly["points"][-1]["start"] == platform.floor_hour(now).isoformat()
    rates = ok(admin.get(f"{V1}/timeseries?metric=error_rate&points=3"))
    assert [p["value"] for p in rates["points"]] == [0.0, None, 0.5]
    daily = ok(admin.get(f"{V1}/timeseries?metric=messages&interval=day&points=4"))
    assert len(daily["points"]) == 4 and sum(p["value"] for p in daily["points"]) == 4  # the failed one not sent
    assert daily["points"][-1]["start"] == now.date().isoformat() or now.hour == 0
    assert len(ok(admin.get(f"{V1}/timeseries"))["points"]) == 24  # messages per hour, the last day
    error(admin.get(f"{V1}/timeseries?metric=cpu"), 400, "invalid_metric")
    error(admin.get(f"{V1}/timeseries?metric="), 400, "invalid_metric")
    error(admin.get(f"{V1}/timeseries?interval=minute"), 400, "invalid_interval")
    error(admin.get(f"{V1}/timeseries?points=169"), 400, "validation_error")


def test_rate_is_the_last_minutes_messages(named, admin):
    session = traffic(named.acme, sent=0, received=0, failed=0)
    now = timezone.now()
    with tenant_context(named.acme):
        for seconds_ago, direction in ((10, "out"), (20, "out"), (30, "in"), (200, "out"), (400, "out")):
            Message.objects.create(session=session, direction=direction, chat_jid="x@s.whatsapp.net",
                                   status="sent" if direction == "out" else "received",
                                   created_at=now - timedelta(seconds=seconds_ago))
    data = ok(admin.get(f"{V1}/rate"))
    assert data["window_seconds"] == 300 and data["per_minute"] == 0.8  # 4 in the last 5 minutes
    assert data["sent_per_minute"] == 0.6 and data["received_per_minute"] == 0.2
    assert data["last_minute"] == {"sent": 2, "received": 1, "total": 3}


def test_histogram_quantiles_follow_promql():
    # 10 observations: 5 up to 0.1, 4 more up to 1, 1 beyond the last bound.
    buckets = [(0.1, 5), (1.0, 9), (math.inf, 10)]
    p50, p90, p99 = platform.histogram_quantiles(buckets, (0.5, 0.9, 0.99))
    assert p50 == pytest.approx(0.1) and p90 == pytest.approx(1.0) and p99 == 1.0
    assert platform.histogram_quantiles([(0.1, 0), (math.inf, 0)], (0.5,)) == [None]
    assert platform.histogram_quantiles([(0.1, 4), (1.0, 4), (math.inf, 4)], (0.25,)) == [pytest.approx(0.025)]


def test_performance_reads_the_latency_histograms_the_queue_and_webhooks(named, admin, clients,
                                                                          django_capture_on_commit_callbacks):
    from whatsapp.webhooks.models import WebhookDelivery, WebhookEndpoint

    before = ok(admin.get(f"{V1}/performance"))
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
    with django_capture_on_commit_callbacks(execute=False):  # accepted, left queued
        response = clients["alice"].post("/api/v1/messages", {"session": "front-desk", "to": "+6281234567890",
                                                               "text": "hi"}, format="json")
    assert response.status_code == 202, response.content
    latency.ACCEPT_TO_SENT.observe(2.0)  # as the drain records a send
    with tenant_context(named.globex):
        endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/x", secret_encrypted="x")
        for n, ms in enumerate((100, 200, 300)):
            WebhookDelivery.objects.create(endpoint=endpoint, event_type="message.received", payload={},
                                           webhook_id=f"msg_{n}", status="succeeded", last_duration_ms=ms)
        WebhookDelivery.objects.create(endpoint=endpoint, event_type="message.received", payload={},
                                       webhook_id="msg_dead", status="dead")
    data = ok(admin.get(f"{V1}/performance"))
    assert data["accept_seconds"]["count"] == before["accept_seconds"]["count"] + 1
    assert data["accept_seconds"]["p50"] is not None
    assert data["queued_to_sent_seconds"]["count"] == before["queued_to_sent_seconds"]["count"] + 1
    assert data["queue"]["messages_queued"] == 1 and data["queue"]["oldest_queued_seconds"] >= 0
    assert set(data["queue"]["tasks_waiting"]) == {"default", "whatsapp"}
    assert data["webhooks"] == {"hours": 1, "count": 4, "succeeded": 3, "p50_ms": 200.0, "p95_ms": 290.0}


def test_alerts_firing_and_recently_resolved(named, admin):
    now = timezone.now()
    firing = Alert.objects.create(key="queue_age", rule="queue_age", summary="A message has waited 12 minutes")
    Alert.objects.create(key="error_rate", rule="error_rate", summary="Old", state="resolved",
                         started_at=now - timedelta(hours=3), resolved_at=now - timedelta(hours=2))
    Alert.objects.create(key=f"webhooks_dead:{named.acme.pk}", rule="webhooks_dead", tenant=named.acme,
                         summary="2 dead", state="resolved", started_at=now - timedelta(hours=2),
                         resolved_at=now - timedelta(hours=1))
    data = ok(admin.get(f"{V1}/alerts"))
    assert [a["id"] for a in data["open"]] == [firing.pk] and data["open"][0]["tenant"] is None
    assert [(a["rule"], a["tenant"]) for a in data["recent"]] == [("webhooks_dead", "acme"), ("error_rate", None)]
    assert [a["rule"] for a in ok(admin.get(f"{V1}/alerts?limit=1"))["recent"]] == ["webhooks_dead"]
    error(admin.get(f"{V1}/alerts?limit=101"), 400, "validation_error")


def test_the_metrics_are_in_the_openapi_schema(db, client):
    schema = client.get("/api/schema/?format=json").json()
    for path in ("", "/tenants", "/tenants/{id}", "/performance", "/timeseries", "/rate", "/alerts"):
        operation = schema["paths"][f"{V1}{path}"]["get"]
        assert {"200", "400", "404"} <= set(operation["responses"]), path
    parameters = {p["name"]: p["schema"] for p in schema["paths"][f"{V1}/timeseries"]["get"]["parameters"]}
    assert parameters["metric"]["enum"] == list(platform.METRICS)
    assert parameters["interval"]["enum"] == ["hour", "day"]
    tenants = schema["paths"][f"{V1}/tenants"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "pagination" in tenants["properties"]


def test_the_page_shows_cards_a_sortable_table_performance_and_alerts(named, client):
    two_tenants(named)
    Alert.objects.create(key="queue_age", rule="queue_age", summary="A message has waited 12 minutes")
    client.force_login(named.admin)
    html = client.get("/platform/metrics/").content.decode()
    assert 'href="/platform/metrics/"' in html  # in the platform navigation
    assert 'data-figure="messages.sent">5<' in html and 'data-figure="messages.failed">1<' in html
    assert html.index('data-testid="metrics-tenant-acme"') < html.index('data-testid="metrics-tenant-globex"')
    assert 'aria-sort="descending"' in html and "<caption" in html
    assert "A message has waited 12 minutes" in html and "Queued → sent" in html
    ascending = client.get("/platform/metrics/?sort=volume&order=asc").content.decode()
    assert ascending.index("metrics-tenant-globex") < ascending.index("metrics-tenant-acme")
    assert 'aria-sort="ascending"' in ascending
    # The header's link turns the order around; the other column's starts from the highest.
    assert 'href="?window=24&amp;sort=volume&amp;order=desc"' in ascending
    assert 'href="?window=24&amp;sort=failure_rate&amp;order=desc"' in ascending
    odd = client.get("/platform/metrics/?sort=x&order=y&window=5&page=zz")
    assert odd.status_code == 200  # a hand-edited address falls back to the defaults
