"""The Analytics page, its CSV downloads, the dashboard card and the page's socket, through Django's test client and
Channels' communicator: figures from the rollups in the workspace's time zone, every member sees them, a plan
without analytics is refused, one tenant never sees another's numbers.

alice owns Acme (Basic: analytics), bob is a member of Acme, carol owns Globex (Pro).
"""
import csv
import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils import timezone
from django_tenants.utils import tenant_context

from analytics import rollups
from whatsapp.conversations.models import Contact, Conversation
from whatsapp.messaging.models import Message
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.tests.socket_support import open_socket, refusal

CHAT = "14155550123@s.whatsapp.net"


def traffic(tenant, *, sent=3, received=2, failed=1, fold=True):
    with tenant_context(tenant):
        session = WhatsAppSession.objects.create(name=f"{tenant.slug}-desk", phone="+14155550100",
                                                 status=WhatsAppSession.Status.CONNECTED)
        contact = Contact.objects.create(session=session, jid=CHAT, phone="+14155550123", name="Dana Customer")
        conversation = Conversation.objects.create(session=session, chat_jid=CHAT, contact=contact)
        now = timezone.now()
        for i in range(received):
            Message.objects.create(session=session, direction="in", chat_jid=CHAT, conversation=conversation,
                                   status="received", created_at=now - timedelta(minutes=30 - i))
        for i in range(sent):
            Message.objects.create(session=session, direction="out", chat_jid=CHAT, conversation=conversation,
                                   status="delivered", created_at=now - timedelta(minutes=10 - i))
        for _ in range(failed):
            Message.objects.create(session=session, direction="out", chat_jid=CHAT, conversation=conversation,
                                   status="failed", failure_reason="not_on_whatsapp: no such number")
        if fold:
            rollups.fold()
        return session


def test_members_see_their_workspace_figures(as_user, named):
    traffic(named.acme)
    traffic(named.globex, sent=7, received=0, failed=0)
    page = as_user(named.bob).get("/analytics/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-figure="message_stats.today.sent">3<' in html
    assert 'data-figure="message_stats.today.received">2<' in html
    assert 'data-figure="message_stats.today.failed">1<' in html
    assert "100.0%" in html  # delivery rate: every message that left was delivered
    assert "Dana Customer" in html and "not_on_whatsapp: no such number" in html
    assert 'href="/analytics/"' in html  # in the navigation
    dashboard = as_user(named.bob).get("/dashboard/").content.decode()
    assert 'data-testid="analytics-card"' in dashboard
    carol = as_user(named.carol).get("/analytics/").content.decode()
    assert 'data-figure="message_stats.today.sent">7<' in carol and "not_on_whatsapp" not in carol


def test_the_send_latency_of_the_last_day_is_shown_with_a_table(as_user, named):
    session = traffic(named.acme, sent=0, received=0, failed=0)
    now = timezone.now()
    with tenant_context(named.acme):
        for accept_to_sent, sent_to_delivered in ((2, 10), (4, 30), (6, None)):
            created = now - timedelta(minutes=20)
            Message.objects.create(
                session=session, direction="out", chat_jid=CHAT, created_at=created,
                status="delivered" if sent_to_delivered else "sent",
                sent_at=created + timedelta(seconds=accept_to_sent),
                delivered_at=created + timedelta(seconds=accept_to_sent + sent_to_delivered)
                if sent_to_delivered else None)
        Message.objects.create(session=session, direction="out", chat_jid=CHAT, status="sent",  # older than a day
                               created_at=now - timedelta(hours=30), sent_at=now - timedelta(hours=29))
    html = as_user(named.bob).get("/analytics/").content.decode()
    assert 'data-testid="send-latency"' in html and 'data-table="latency"' in html
    assert 'data-figure="message_stats.latency.accept_to_sent.count">3<' in html
    assert 'data-figure="message_stats.latency.accept_to_sent.p50_seconds">4.0<' in html
    assert 'data-figure="message_stats.latency.accept_to_sent.p95_seconds">5.8<' in html
    assert 'data-figure="message_stats.latency.sent_to_delivered.count">2<' in html
    assert 'data-figure="message_stats.latency.sent_to_delivered.p50_seconds">20.0<' in html
    assert "Accepted → sent" in html and "Sent → delivered" in html
    empty = as_user(named.carol).get("/analytics/").content.decode()  # Globex sent nothing: dashes, not zeros
    assert 'data-figure="message_stats.latency.accept_to_sent.p50_seconds">–<' in empty


def test_the_chart_follows_period_and_session_and_downloads_as_csv(as_user, named):
    traffic(named.acme, fold=False)  # not folded yet: the counted changes are read too
    client = as_user(named.alice)
    page = client.get("/analytics/?days=7&session=acme-desk").content.decode()
    assert '<option value="7" selected>' in page and 'value="acme-desk" selected' in page
    response = client.get("/analytics/messages-per-day.csv?days=7&session=acme-desk")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["date", "sent", "received", "failed"] and len(rows) == 8
    assert [int(v) for v in rows[-1][1:]] == [3, 2, 1]
    other = client.get("/analytics/messages-per-day.csv?days=7&session=nobody")  # unknown session: all of them
    assert list(csv.reader(io.StringIO(other.content.decode())))[-1][1:] == ["3", "2", "1"]
    heat = list(csv.reader(io.StringIO(client.get("/analytics/weekday-hour.csv").content.decode())))
    assert len(heat) == 1 + 168 and sum(int(r[2]) + int(r[3]) for r in heat[1:]) == 6
    top = list(csv.reader(io.StringIO(client.get("/analytics/top-contacts.csv").content.decode())))
    assert top[1][:2] == ["Dana Customer", "+14155550123"]
    failures = list(csv.reader(io.StringIO(client.get("/analytics/failures.csv").content.decode())))
    assert failures[1] == ["not_on_whatsapp: no such number", "1"]
    assert client.get("/analytics/nothing.csv").status_code == 404


def test_a_plan_without_analytics_is_refused(as_user, named, plans):
    named.acme.plan = plans["free"]
    named.acme.save(update_fields=["plan"])
    response = as_user(named.alice).get("/analytics/")
    assert response.status_code == 403 and b"not part of the" in response.content
    assert as_user(named.alice).get("/analytics/failures.csv").status_code == 404
    assert b'data-testid="analytics-card"' not in as_user(named.alice).get("/dashboard/").content


def test_login_is_required(client, named):
    response = client.get("/analytics/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db(transaction=True)
def test_the_socket_sends_new_figures_when_a_message_changes(client, named, plans, settings, private_layer):
    settings.ANALYTICS_LIVE_SECONDS = 0.2
    session = traffic(named.acme, sent=1, received=0, failed=0)

    def add_inbound():
        with tenant_context(named.acme):
            Message.objects.create(session=session, direction="in", chat_jid=CHAT, status="received")

    async def scenario():
        ws, connected, _ = await open_socket(client, named.alice, "/ws/analytics/?days=7")
        assert connected
        first = await ws.receive_json_from(timeout=5)
        assert first["type"] == "analytics.update"
        assert first["data"]["dashboard"]["message_stats"]["today"]["sent"] == 1
        assert len(first["data"]["trend"]) == 7
        await database_sync_to_async(add_inbound)()
        second = await ws.receive_json_from(timeout=5)
        assert second["data"]["dashboard"]["message_stats"]["today"]["received"] == 1
        await ws.disconnect()

        named.globex.plan = plans["free"]
        await database_sync_to_async(named.globex.save)(update_fields=["plan"])
        assert await refusal(client, named.carol, "/ws/analytics/") == 4403  # not in the plan
        assert await refusal(client, None, "/ws/analytics/") == 4404

    async_to_sync(scenario)()
