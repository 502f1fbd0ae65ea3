"""Nothing in doubt for long (issue 11): the id is stored before a send, a host taking a session over settles
what the previous host left `sending` at once (proved by WhatsApp's side → sent, else failed host_lost), a receipt
for a host_lost message moves it on, and a linked session on its way back (starting, reconnecting, taken over)
accepts sends (202) that go once it is connected; 409 only for sessions that cannot come back by themselves.

alice owns Acme. Celery is eager; the in-process session host runs on the simulator (whatsapp.tests.support).
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from whatsapp.host.models import SessionLease
from whatsapp.messaging import drain as sending
from whatsapp.models import Message, WebhookDelivery, WhatsAppSession
from whatsapp.providers import simulator_outbox
from whatsapp.providers.base import EventKind, ProviderEvent
from whatsapp.sessions.tasks import mark_orphaned_sessions
from whatsapp.tests.support import error, link_session, ok, settle, simulator_host
from whatsapp.webhooks import actions as webhook_actions
from whatsapp.webhooks import delivery as wire

pytestmark = pytest.mark.django_db(transaction=True)
V1 = "/api/v1"
TO = "+6281234567890"
EVENTS = ["message.sent", "message.delivered", "message.read", "message.failed"]


@pytest.fixture
def hooks(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    monkeypatch.setattr(wire, "attempt", lambda delivery, now=None: None)


def post(client, text, session="front-desk"):
    return client.post(f"{V1}/messages", {"session": session, "to": TO, "text": text}, format="json")


def load(tenant, pk):
    with tenant_context(tenant):
        return Message.objects.get(pk=pk)


def events(tenant):
    with tenant_context(tenant):
        return sorted((d.event_type, d.payload["data"]["id"]) for d in WebhookDelivery.objects.all())


def left_sending(session, provider_message_id, text):
    return Message.objects.create(session=session, direction="out", chat_jid="6281234567890@s.whatsapp.net",
                                  to_phone=TO, text=text, status="sending", attempts=1,
                                  provider_message_id=provider_message_id,
                                  next_attempt_at=timezone.now() + sending.RETRY_AFTER)


def test_the_id_is_stored_before_the_message_is_handed_over(named, clients, host, clock, hooks, monkeypatch):
    provider = link_session(clients["alice"], host, clock)
    seen = {}
    original = type(provider).send

    def send(self, to, message, message_id=None):
        with tenant_context(named.acme):
            seen["stored"] = Message.objects.values_list("provider_message_id", flat=True).get()
        seen["chosen"] = message_id
        return original(self, to, message, message_id=message_id)

    monkeypatch.setattr(type(provider), "send", send)
    data = ok(post(clients["alice"], "Hello"), 202)
    sent = load(named.acme, data["id"])
    assert sent.status == "sent" and seen["chosen"] and seen["stored"] == seen["chosen"] == sent.provider_message_id
    assert [r["id"] for r in simulator_outbox.read(host.store_dir)] == [sent.provider_message_id]


def test_a_host_taking_a_session_over_settles_its_in_doubt_messages_at_once(named, clients, host, clock, hooks,
                                                                              tmp_path):
    link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    schema_name, session_id = key.split(":")
    with tenant_context(named.acme):
        webhook_actions.create_endpoint(named.acme, acting_user=None, url="http://127.0.0.1:9/hook", events=EVENTS)
        session = WhatsAppSession.objects.get(name="front-desk")
        proved = left_sending(session, "SIMPROVED1", "WhatsApp has this one")
        unknown = left_sending(session, "SIMUNKNOWN", "chosen, never handed over")
        no_id = left_sending(session, "", "a provider that tells the id only afterwards")
    # The dead host handed the first one over: WhatsApp's side (the simulator's outbox) holds it.
    simulator_outbox.record(host.store_dir, session_key=key, message_id="SIMPROVED1", chat="x", type="text",
                            text="WhatsApp has this one")
    # host-test dies (stops renewing); its lease expires and another host claims the session.
    SessionLease.objects.filter(host_id="host-test").update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    other = simulator_host(clock, host.store_dir, "host-b")
    try:
        assert other.sync() == {key}
        # Settled by the time the new host starts the client, not minutes later by the sweeper.
        assert load(named.acme, proved.pk).status == "sent"
        assert load(named.acme, proved.pk).sent_at is not None
        for message in (unknown, no_id):
            lost = load(named.acme, message.pk)
            assert lost.status == "failed" and lost.failure_reason.startswith("host_lost:"), lost.failure_reason
            assert "took the session over" in lost.failure_reason
        assert events(named.acme) == sorted([("message.sent", proved.pk), ("message.failed", unknown.pk),
                                             ("message.failed", no_id.pk)])

        # WhatsApp then delivers the one reported lost: its receipt moves it on, and the tenant hears of it.
        other.handle(ProviderEvent(key, EventKind.RECEIPT, {"ids": ["SIMUNKNOWN"], "status": "delivered"}))
        delivered = load(named.acme, unknown.pk)
        assert delivered.status == "delivered" and delivered.failure_reason == "" and delivered.delivered_at
        assert ("message.delivered", unknown.pk) in events(named.acme)
        other.handle(ProviderEvent(key, EventKind.RECEIPT, {"ids": ["SIMUNKNOWN"], "status": "read"}))
        assert load(named.acme, unknown.pk).status == "read"
        # A failure that was not a lost host stays failed, whatever a receipt says.
        with tenant_context(named.acme):
            Message.objects.filter(pk=no_id.pk).update(provider_message_id="SIMREFUSED",
                                                       failure_reason="rate_limited: refused")
        other.handle(ProviderEvent(key, EventKind.RECEIPT, {"ids": ["SIMREFUSED"], "status": "delivered"}))
        assert load(named.acme, no_id.pk).status == "failed"
    finally:
        other.stop(release=True)


def test_a_receipt_for_a_message_still_sending_waits_for_its_record(named, clients, host, clock, hooks):
    link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    with tenant_context(named.acme):
        in_flight = left_sending(WhatsAppSession.objects.get(name="front-desk"), "SIMINFLIGHT", "racing")
    host.handle(ProviderEvent(key, EventKind.RECEIPT, {"ids": ["SIMINFLIGHT"], "status": "delivered"}))
    assert load(named.acme, in_flight.pk).status == "sending" and len(host.early_receipts) == 1
    with tenant_context(named.acme):
        sending.record_sent([(Message.objects.get(pk=in_flight.pk), "SIMINFLIGHT")])
    host.retry_early_receipts()
    assert load(named.acme, in_flight.pk).status == "delivered" and host.early_receipts == []


def test_sends_while_the_session_restarts_or_reconnects_are_queued_and_go_out(named, clients, host, clock, hooks):
    provider = link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    # Restarted (as when another host takes it over): "reconnecting" until WhatsApp answers.
    host.command(key, "restart")
    with tenant_context(named.acme):
        assert WhatsAppSession.objects.get(name="front-desk").status == "reconnecting"
    during_start = ok(post(clients["alice"], "while starting"), 202)
    assert during_start["status"] == "queued"
    settle(host, clock)
    assert load(named.acme, during_start["id"]).status == "sent"

    provider = host.provider(key)
    provider.simulate_disconnect()
    settle(host, clock, seconds=0)
    with tenant_context(named.acme):
        assert WhatsAppSession.objects.get(name="front-desk").status == "reconnecting"
    during_reconnect = ok(post(clients["alice"], "while reconnecting"), 202)
    assert load(named.acme, during_reconnect["id"]).status == "queued"
    settle(host, clock)  # reconnected: what waited goes now
    assert load(named.acme, during_reconnect["id"]).status == "sent"


def test_a_session_whose_host_died_says_reconnecting_until_another_host_has_it_connected(named, clients, host,
                                                                                          clock, hooks):
    link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    # host-test dies: nobody renews its lease. Until the lease expires nothing can tell; then the sweeper does.
    assert mark_orphaned_sessions() == 0
    SessionLease.objects.filter(host_id="host-test").update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert mark_orphaned_sessions() == 1 and mark_orphaned_sessions() == 0
    shown = ok(clients["alice"].get(f"{V1}/sessions/front-desk"))
    assert shown["status"] == "reconnecting" and "taking it over" in shown["status_detail"]
    during_takeover = ok(post(clients["alice"], "while taken over"), 202)
    assert during_takeover["status"] == "queued"

    other = simulator_host(clock, host.store_dir, "host-b")
    try:
        assert other.sync() == {key}
        with tenant_context(named.acme):  # the new host starts the client: still reconnecting, not "starting"
            assert WhatsAppSession.objects.get(name="front-desk").status == "reconnecting"
        assert load(named.acme, during_takeover["id"]).status == "queued"
        settle(other, clock)
        with tenant_context(named.acme):
            assert WhatsAppSession.objects.get(name="front-desk").status == "connected"
        other.drain(key)  # the drain CONNECTED wakes (eager Celery runs it on this process's current host)
        settle(other, clock)
        assert load(named.acme, during_takeover["id"]).status in ("sent", "delivered", "read")
    finally:
        other.stop(release=True)


@pytest.mark.parametrize("status, linked, should_run", [
    ("logged_out", False, False), ("new", False, False), ("stopped", True, False), ("error", True, False),
    ("disconnected", True, True), ("starting", False, True), ("reconnecting", True, False), ("qr", False, True)])
def test_sessions_that_cannot_come_back_by_themselves_refuse_sends(named, clients, status, linked, should_run):
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="asleep", status=status, should_run=should_run,
                                       jid_user="14155550123" if linked else "")
    refused = error(post(clients["alice"], "no", session="asleep"), 409, "session_not_connected")
    assert refused["details"] == {"status": status}
    with tenant_context(named.acme):
        assert not Message.objects.exists()


def test_an_inbound_message_applied_by_two_hosts_at_once_is_stored_once(named):
    """The check before the insert cannot see a row another host is inserting: the constraint decides, and the
    loser returns nothing instead of failing the event (which would leave it unacknowledged forever)."""
    from whatsapp.messaging import actions as messaging

    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="twice", status=WhatsAppSession.Status.CONNECTED)
        data = {"id": "SIMTWICE", "chat": "628123@s.whatsapp.net", "sender": "628123@s.whatsapp.net",
                "sender_phone": "+6281234567890", "from_me": False, "timestamp": 1, "type": "text", "text": "hi"}
        first = messaging.store_inbound(session, data)
        # The other host looked before the first insert committed: the existence check is skipped for it.
        original = Message.objects.filter
        calls = []

        def blind_filter(*args, **kwargs):
            calls.append(kwargs)
            query = original(*args, **kwargs)
            return query.none() if kwargs.get("provider_message_id") == "SIMTWICE" else query

        Message.objects.filter = blind_filter
        try:
            assert messaging.store_inbound(session, data) is None
        finally:
            del Message.objects.filter
        assert calls and list(Message.objects.filter(direction="in").values_list("pk", flat=True)) == [first.pk]
