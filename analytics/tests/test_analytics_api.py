"""The analytics API: dashboard and trends from the rollups, the session activity log, custom events (size limit,
filters, pagination), cleanup for platform admins and the retention beat; bad input answered with its code and
nothing written; another tenant's session is 404; a plan without analytics is 403.

alice owns Acme (Basic), bob is a member of Acme, carol owns Globex (Pro), admin is a platform admin.
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from analytics.models import Event
from analytics.tasks import purge_old_events
from audit.models import AuditLog
from whatsapp.tests.support import error, ok

from .test_analytics_page import traffic

V1 = "/api/v1/analytics"


def test_dashboard_and_trends_in_the_envelope(named, clients):
    traffic(named.acme)
    data = ok(clients["bob"].get(f"{V1}/dashboard"))
    assert data["message_stats"]["today"] == {"sent": 3, "received": 2, "failed": 1, "pending": 0}
    assert data["message_stats"]["delivery_rate"] == 1.0
    assert data["message_stats"]["failures_by_reason"] == [{"reason": "not_on_whatsapp: no such number", "count": 1}]
    assert data["session_stats"]["by_state"]["connected"] == 1 and data["session_stats"]["active"] == 1
    assert data["overview"]["contacts"] == 1 and data["conversation_stats"]["total"] == 1
    assert data["conversation_stats"]["first_response"]["count"] == 1  # the first reply after the inbound ones
    assert len(data["hourly_activity"]) == 168 and data["top_contacts"][0]["total"] == 6
    trends = ok(clients["alice"].get(f"{V1}/trends?days=30"))
    assert trends["days"] == 30 and len(trends["series"]) == 30 and trends["session"] is None
    assert trends["series"][-1]["sent"] == 3 and trends["series"][-1]["date"] == timezone.now().date().isoformat()
    assert len(ok(clients["alice"].get(f"{V1}/trends"))["series"]) == 7
    assert ok(clients["alice"].get(f"{V1}/trends?days=1&session=acme-desk"))["series"][0]["received"] == 2
    assert ok(clients["carol"].get(f"{V1}/dashboard"))["message_stats"]["today"]["sent"] == 0


@pytest.mark.parametrize("query", ["days=0", "days=366", "days=abc", "days=-1", "days=7.5"])
def test_days_outside_1_to_365_are_refused(named, clients, query):
    error(clients["alice"].get(f"{V1}/trends?{query}"), 400, "invalid_days")


def test_another_tenants_session_is_not_found(named, clients):
    traffic(named.globex)
    error(clients["alice"].get(f"{V1}/trends?session=globex-desk"), 404, "not_found")
    error(clients["alice"].get(f"{V1}/sessions/globex-desk/activity"), 404, "not_found")
    error(clients["alice"].post(f"{V1}/events", {"event_type": "x", "session_name": "globex-desk"}, format="json"),
          404, "not_found")
    assert ok(clients["carol"].get(f"{V1}/sessions/globex-desk/activity")) == []


def test_custom_events_are_recorded_filtered_and_paginated(named, clients):
    traffic(named.acme)
    for i in range(3):
        created = ok(clients["bob"].post(f"{V1}/events", {"event_type": "order.paid", "session_name": "acme-desk",
                                                          "event_data": {"order": i, "paid": True, "by": "card"}},
                                         format="json"), 201)
    assert created["event_data"] == {"order": 2, "paid": True, "by": "card"}
    assert created["session_name"] == "acme-desk"
    ok(clients["bob"].post(f"{V1}/events", {"event_type": "lead"}, format="json"), 201)
    response = clients["alice"].get(f"{V1}/events?event_type=order.paid&limit=2")
    body = response.json()
    assert [e["event_data"]["order"] for e in body["data"]] == [2, 1]
    assert body["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}
    assert len(ok(clients["alice"].get(f"{V1}/events?session_name=acme-desk"))) == 3
    assert ok(clients["carol"].get(f"{V1}/events")) == []  # Globex has none of Acme's
    error(clients["alice"].get(f"{V1}/events?event_type=bad%20type"), 400, "validation_error")


@pytest.mark.parametrize("body, status, code", [
    ({"event_type": "big", "event_data": {"blob": "x" * 8200}}, 413, "event_too_large"),
    ({"event_type": "list", "event_data": [1, 2]}, 400, "validation_error"),
    ({"event_type": "text", "event_data": "hello"}, 400, "validation_error"),
    ({"event_type": "nested", "event_data": {"a": {"b": 1}}}, 400, "validation_error"),
    ({"event_type": "null", "event_data": {"a": None}}, 400, "validation_error"),
    ({"event_type": "has space"}, 400, "validation_error"),
    ({"event_data": {}}, 400, "validation_error"),
    ({"event_type": "x", "extra": 1}, 400, "validation_error"),
])
def test_bad_events_are_refused_and_nothing_is_written(named, clients, body, status, code):
    error(clients["alice"].post(f"{V1}/events", body, format="json"), status, code)
    with tenant_context(named.acme):
        assert not Event.objects.exists()


def test_an_event_of_exactly_8_kb_is_kept(named, clients):
    blob = "x" * (8192 - len('{"b":""}'))
    ok(clients["alice"].post(f"{V1}/events", {"event_type": "edge", "event_data": {"b": blob}}, format="json"), 201)


def test_a_plan_without_analytics_gets_403(named, clients, plans):
    named.acme.plan = plans["free"]
    named.acme.save(update_fields=["plan"])
    error(clients["alice"].get(f"{V1}/dashboard"), 403, "feature_not_in_plan")
    error(clients["alice"].post(f"{V1}/events", {"event_type": "x"}, format="json"), 403, "feature_not_in_plan")


def test_cleanup_is_for_platform_admins_and_retention_runs_by_beat(named, clients, api_as, settings):
    old = timezone.now() - timedelta(days=100)
    for tenant in (named.acme, named.globex):
        with tenant_context(tenant):
            Event.objects.create(event_type="old", created_at=old)
            Event.objects.create(event_type="older", created_at=old - timedelta(days=300))
            Event.objects.create(event_type="new")
    error(clients["alice"].delete(f"{V1}/cleanup?days=90"), 404, "not_found")
    admin = api_as(named.admin)
    error(admin.delete(f"{V1}/cleanup?days=0"), 400, "invalid_days")
    assert ok(admin.delete(f"{V1}/cleanup?days=365")) == {"days": 365, "deleted": 2, "tenants": 2}
    assert AuditLog.objects.filter(action="analytics.events_purged", actor=named.admin).count() == 2
    settings.ANALYTICS_RETENTION_DAYS = 90
    assert purge_old_events() == 2
    with tenant_context(named.acme):
        assert list(Event.objects.values_list("event_type", flat=True)) == ["new"]


def test_dashboard_send_latency_is_the_last_days_percentiles_from_the_messages(named, clients):
    from whatsapp.models import Message

    session = traffic(named.acme, sent=0, received=0, failed=0)
    now = timezone.now()
    with tenant_context(named.acme):
        Message.objects.all().delete()
        for i in range(1, 11):  # accepted i seconds before sent; delivered 10·i seconds after
            accepted = now - timedelta(hours=1)
            sent = accepted + timedelta(seconds=i)
            Message.objects.create(session=session, direction="out", chat_jid="c@s.whatsapp.net", status="delivered",
                                   created_at=accepted, sent_at=sent, delivered_at=sent + timedelta(seconds=10 * i))
        Message.objects.create(session=session, direction="out", chat_jid="c@s.whatsapp.net", status="queued",
                               created_at=now)  # not sent yet: not measured
        old = now - timedelta(hours=30)  # before the last 24 hours: not counted
        Message.objects.create(session=session, direction="out", chat_jid="c@s.whatsapp.net", status="delivered",
                               created_at=old, sent_at=old + timedelta(hours=1), delivered_at=old + timedelta(hours=2))
    latency = ok(clients["alice"].get(f"{V1}/dashboard"))["message_stats"]["latency"]
    assert latency["hours"] == 24
    # percentile_cont over 1..10 s: p50 5.5, p95 9.55 (rounded to a tenth); 10× for sent → delivered
    assert latency["accept_to_sent"]["count"] == 10 and latency["accept_to_sent"]["p50_seconds"] == 5.5
    assert latency["accept_to_sent"]["p95_seconds"] == pytest.approx(9.55, abs=0.051)
    assert latency["sent_to_delivered"] == {"count": 10, "p50_seconds": 55.0, "p95_seconds": 95.5}
    empty = ok(clients["carol"].get(f"{V1}/dashboard"))["message_stats"]["latency"]
    assert empty["accept_to_sent"] == {"count": 0, "p50_seconds": None, "p95_seconds": None}
