"""Usage per tenant per day: API requests counted per key (Redis, then beat into the tenant's rows, none lost or
counted twice), messages and media from the rollups, webhook deliveries; GET /api/v1/usage?from=&to= with its
limits; the dashboard's and the billing page's card against the plan's limits; tenants never see each other's.

alice owns Acme (Basic), bob is a member of Acme, carol owns Globex (Pro).
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from analytics import usage
from analytics.models import ApiUsageHourly
from analytics.tasks import flush_api_usage
from whatsapp.messaging.models import Message
from whatsapp.tests.support import error, ok

from .test_analytics_page import traffic


@pytest.fixture(autouse=True)
def _fresh_usage_keys():
    """Counts of earlier tests (same Redis database) are moved out of the way first."""
    usage.flush()


def test_api_requests_are_counted_per_key_and_moved_by_beat(named, clients, api_as):
    other = api_as(named.alice)
    for _ in range(3):
        ok(clients["alice"].get("/api/v1/analytics/trends"))
    ok(other.get("/api/v1/me"))
    error(clients["alice"].get("/api/v1/analytics/trends?days=0"), 400, "invalid_days")  # answered: counted
    ok(clients["carol"].get("/api/v1/me"))
    assert flush_api_usage() == 6
    assert flush_api_usage() == 0  # moved once
    with tenant_context(named.acme):
        assert sorted(ApiUsageHourly.objects.values_list("requests", flat=True)) == [1, 4]
    data = ok(clients["bob"].get("/api/v1/usage"))
    assert data["totals"]["api_requests"] == 5  # this request is counted after it is answered
    assert sorted(k["requests"] for k in data["api_keys"]) == [1, 4]
    assert {k["prefix"][:3] for k in data["api_keys"]} == {"sb_"}
    carol = ok(clients["carol"].get("/api/v1/usage"))
    assert carol["totals"]["api_requests"] == 1


def test_messages_media_and_limits_per_day(named, clients):
    session = traffic(named.acme)
    with tenant_context(named.acme):
        Message.objects.create(session=session, direction="in", chat_jid="1@s.whatsapp.net", status="received",
                               type="image", media_size=5000)
        Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net", status="sent",
                               created_at=timezone.now() - timedelta(days=3))
    today = timezone.now().date()
    data = ok(clients["alice"].get(f"/api/v1/usage?from={today - timedelta(days=6)}&to={today}"))
    assert len(data["days"]) == 7 and data["days"][-1]["date"] == today.isoformat()
    assert data["days"][-1]["messages_sent"] == 3 and data["days"][-1]["messages_received"] == 3
    assert data["days"][-1]["media_bytes"] == 5000 and data["days"][-4]["messages_sent"] == 1
    assert data["totals"]["messages_sent"] == 4
    assert data["plan"] == {"code": "basic", "name": "Basic", "max_sessions": 5, "sessions": 1, "max_users": 3,
                            "users": 2, "messages_per_minute": 30}
    assert ok(clients["carol"].get("/api/v1/usage"))["totals"]["messages_sent"] == 0


@pytest.mark.parametrize("query", ["from=2026-02-30", "from=yesterday", "to=2026-1-1"])
def test_dates_that_are_not_dates_are_refused(named, clients, query):
    error(clients["alice"].get(f"/api/v1/usage?{query}"), 400, "validation_error")


def test_ranges_backwards_too_long_or_too_old_are_refused(named, clients):
    today = timezone.now().date()
    for first, last in ((today, today - timedelta(days=1)), (today - timedelta(days=366), today),
                        (today.replace(year=today.year - 10), today.replace(year=today.year - 10))):
        error(clients["alice"].get(f"/api/v1/usage?from={first}&to={last}"), 400, "invalid_range")
    assert len(ok(clients["alice"].get(f"/api/v1/usage?from={today - timedelta(days=365)}&to={today}"))["days"]) == 366


def test_the_dashboard_and_billing_pages_show_usage_against_the_plan(as_user, named):
    traffic(named.acme)
    for page in ("/dashboard/", "/billing/"):
        html = as_user(named.bob).get(page).content.decode()
        assert 'data-testid="usage-card"' in html, page
        assert 'data-testid="usage-messages-sent">3<' in html
        assert 'data-testid="usage-sessions">1 of 5<' in html
