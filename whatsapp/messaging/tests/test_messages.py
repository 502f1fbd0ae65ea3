"""Messages: POST/GET /api/v1/messages (text), idempotency, bad input leaving no row, the sending pipeline end to
end through an in-process session host on the simulator (queued → sent → delivered → read, failures, inbound),
the sweeper, webhook events for every transition, and tenant isolation.

alice owns Acme, bob is a member of Acme, carol owns Globex. Celery is eager: the drain task runs on commit in
the test process, on the host set as current (as in test_sessions_api).
"""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import drain as sending
from whatsapp.messaging.tasks import sweep_queued_messages
from whatsapp.models import Message, WebhookDelivery, WhatsAppSession
from whatsapp.providers.base import EventKind, ProviderEvent
from whatsapp.tests.support import drain, error, link_session, ok, settle
from whatsapp.webhooks import actions as webhook_actions
from whatsapp.webhooks import delivery as wire

V1 = "/api/v1"
PHONE = "+14155550123"
TO = "+6281234567890"
EVENTS = ["message.received", "message.sent", "message.delivered", "message.read", "message.failed"]


def count(tenant, **filters):
    with tenant_context(tenant):
        return Message.objects.filter(**filters).count()


def load(tenant, pk):
    with tenant_context(tenant):
        return Message.objects.get(pk=pk)


def make_session(tenant, name="front-desk", **fields):
    fields.setdefault("status", WhatsAppSession.Status.CONNECTED)
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, phone=PHONE, **fields)


def post(client, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"{V1}/messages", body, format="json", **headers)


@pytest.fixture
def hooks(settings, monkeypatch):
    """Webhook deliveries are stored but not attempted (their sending is tested in test_webhooks)."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    monkeypatch.setattr(wire, "attempt", lambda delivery, now=None: None)


def subscribe(tenant):
    with tenant_context(tenant):
        endpoint, _ = webhook_actions.create_endpoint(tenant, acting_user=None, url="http://127.0.0.1:9/hook",
                                                      events=EVENTS)
    return endpoint


def deliveries(tenant):
    with tenant_context(tenant):
        return [(d.event_type, d.payload["data"]["id"], d.payload["data"]["status"])
                for d in WebhookDelivery.objects.order_by("id")]


# --- the API contract -----------------------------------------------------------------------------------------


def test_post_queues_a_text_message_and_it_can_be_read_back(named, clients):
    make_session(named.acme)
    data = ok(post(clients["bob"], {"session": "front-desk", "to": "+1 (415) 555-0124", "type": "text",
                                    "text": "Hello"}), 202)
    assert data["status"] == "queued" and data["direction"] == "out" and data["type"] == "text"
    assert data["to"] == "+14155550124" and data["chat"] == "14155550124@s.whatsapp.net"
    assert data["session"] == "front-desk" and data["text"] == "Hello" and data["sent_at"] is None
    message = load(named.acme, data["id"])
    assert message.status == "queued" and message.to_phone == "+14155550124"
    assert ok(clients["alice"].get(f"{V1}/messages/{data['id']}")) == data

    listed = clients["alice"].get(f"{V1}/messages").json()
    assert [m["id"] for m in listed["data"]] == [data["id"]]
    assert listed["pagination"] == {"page": 1, "limit": 20, "total": 1, "pages": 1}


def test_recipients_are_normalised_and_group_jids_accepted(named, clients):
    make_session(named.acme)
    for to, phone, chat in [("14155550124", "+14155550124", "14155550124@s.whatsapp.net"),
                            ("14155550124@s.whatsapp.net", "+14155550124", "14155550124@s.whatsapp.net"),
                            ("120363025246125486@g.us", "", "120363025246125486@g.us")]:
        data = ok(post(clients["alice"], {"session": "front-desk", "to": to, "text": "hi"}), 202)
        assert (load(named.acme, data["id"]).to_phone, data["chat"]) == (phone, chat)


def test_list_filters_and_paginates(named, clients):
    session = make_session(named.acme)
    make_session(named.acme, "other")
    with tenant_context(named.acme):
        for i in range(3):
            Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net", text=str(i))
        Message.objects.create(session=session, direction="in", status="received", chat_jid="1@s.whatsapp.net")
        Message.objects.create(session=WhatsAppSession.objects.get(name="other"), direction="out",
                               status="sent", chat_jid="1@s.whatsapp.net")
    alice = clients["alice"]
    assert len(ok(alice.get(f"{V1}/messages?session=front-desk"))) == 4
    assert [m["direction"] for m in ok(alice.get(f"{V1}/messages?direction=in"))] == ["in"]
    assert [m["session"] for m in ok(alice.get(f"{V1}/messages?status=sent"))] == ["other"]
    page = alice.get(f"{V1}/messages?page=2&limit=2").json()
    assert len(page["data"]) == 2 and page["pagination"] == {"page": 2, "limit": 2, "total": 5, "pages": 3}
    error(alice.get(f"{V1}/messages?status=bogus"), 400, "invalid_status")
    error(alice.get(f"{V1}/messages?direction=sideways"), 400, "invalid_direction")


def test_list_filters_by_contact_id_or_phone(named, clients):
    from whatsapp.models import Contact

    session = make_session(named.acme)
    with tenant_context(named.acme):
        ann = Contact.objects.create(session=session, jid="442071838750@s.whatsapp.net", phone="+442071838750")
        Message.objects.create(session=session, direction="out", to_phone="+442071838750", contact=ann,
                               chat_jid=ann.jid, text="to ann")
        Message.objects.create(session=session, direction="in", status="received", from_phone="+442071838750",
                               contact=ann, chat_jid=ann.jid, text="from ann")
        Message.objects.create(session=session, direction="out", to_phone=TO, chat_jid="x@s.whatsapp.net",
                               text="someone else")
    alice = clients["alice"]
    assert sorted(m["text"] for m in ok(alice.get(f"{V1}/messages?contact={ann.pk}"))) == ["from ann", "to ann"]
    assert sorted(m["text"] for m in ok(alice.get(f"{V1}/messages", {"contact": "+442071838750"}))) == [
        "from ann", "to ann"]
    error(alice.get(f"{V1}/messages?contact=bob"), 400, "invalid_contact")
    # Another tenant's contact id finds nothing in this tenant's schema.
    assert ok(clients["carol"].get(f"{V1}/messages?contact={ann.pk}")) == []


GOOD = {"session": "front-desk", "to": TO, "type": "text", "text": "hi"}
BAD_INPUT = [
    ({**GOOD, "session": "nope"}, 404, "not_found"),
    ({**GOOD, "session": "asleep"}, 409, "session_not_connected"),
    ({**GOOD, "type": "image"}, 400, "missing_media"),
    ({**GOOD, "type": "hologram"}, 400, "unsupported_type"),
    ({k: v for k, v in GOOD.items() if k != "text"}, 400, "missing_text"),
    ({**GOOD, "text": "   "}, 400, "missing_text"),
    ({**GOOD, "text": "x" * 4097}, 400, "text_too_long"),
    ({k: v for k, v in GOOD.items() if k != "to"}, 400, "validation_error"),
    ({k: v for k, v in GOOD.items() if k != "session"}, 400, "validation_error"),
    ({**GOOD, "to": "not a number"}, 400, "invalid_recipient"),
    ({**GOOD, "to": "+1234"}, 400, "invalid_recipient"),
    ({**GOOD, "to": "abc@s.whatsapp.net"}, 400, "invalid_recipient"),
    ({**GOOD, "to": "123@example.com"}, 400, "invalid_recipient"),
    ({**GOOD, "to": "+442071838750"}, 400, "blocked_recipient"),
]


@pytest.mark.parametrize("body,status,code", BAD_INPUT)
def test_bad_input_is_refused_with_a_code_and_leaves_no_row(named, clients, settings, body, status, code):
    settings.WHATSAPP_BLOCKED_NUMBERS = ["442071838750"]
    make_session(named.acme)
    make_session(named.acme, "asleep", status=WhatsAppSession.Status.DISCONNECTED)
    err = error(post(clients["alice"], body), status, code)
    if code == "session_not_connected":
        assert err["details"] == {"status": "disconnected"}
    if code == "unsupported_type":
        assert err["details"] == {"supported": ["text", "image", "document", "audio", "video", "location", "contact",
                                                "reaction"]}
    assert count(named.acme) == 0


def test_an_unpaid_tenant_cannot_send_but_can_read(named, clients):
    make_session(named.acme)
    Subscription.objects.filter(tenant=named.acme).update(status="read_only", read_only_since=timezone.now())
    error(post(clients["alice"], GOOD), 402, "payment_required")
    assert count(named.acme) == 0
    assert ok(clients["alice"].get(f"{V1}/messages")) == []


def test_the_same_idempotency_key_returns_the_same_message(named, clients):
    make_session(named.acme)
    first = ok(post(clients["alice"], GOOD, key="order-42"), 202)
    again = post(clients["bob"], GOOD, key="order-42")
    assert again["Idempotent-Replayed"] == "true"
    assert ok(again, 200)["id"] == first["id"]
    assert count(named.acme) == 1
    err = error(post(clients["alice"], {**GOOD, "text": "something else"}, key="order-42"), 409,
                "idempotency_conflict")
    assert err["details"] == {"message_id": first["id"]}
    assert count(named.acme) == 1
    assert ok(post(clients["alice"], GOOD, key="order-43"), 202)["id"] != first["id"]  # another key, another one
    # Keys are the tenant's own: Globex may use the same one.
    make_session(named.globex)
    ok(post(clients["carol"], GOOD, key="order-42"), 202)
    assert count(named.acme) == 2 and count(named.globex) == 1


def test_another_tenants_messages_are_not_found(named, clients):
    make_session(named.acme)
    make_session(named.globex, "globex-desk")
    acme_id = ok(post(clients["alice"], GOOD), 202)["id"]
    error(clients["carol"].get(f"{V1}/messages/{acme_id}"), 404, "not_found")
    assert ok(clients["carol"].get(f"{V1}/messages")) == []
    error(post(clients["carol"], GOOD), 404, "not_found")  # acme's session name means nothing to Globex
    error(clients["alice"].get(f"{V1}/messages/999999"), 404, "not_found")
    assert count(named.globex) == 0


# --- the pipeline with a running session host -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_message_goes_queued_sent_delivered_read_with_a_webhook_event_each(named, clients, host, clock, hooks):
    link_session(clients["alice"], host, clock)
    subscribe(named.acme)
    data = ok(post(clients["alice"], {"session": "front-desk", "to": TO, "type": "text", "text": "Hello"}), 202)
    assert data["status"] == "queued"  # answered before the send; the task ran on commit
    sent = load(named.acme, data["id"])
    assert sent.status == "sent" and sent.provider_message_id.startswith("SIM") and sent.sent_at
    assert sent.attempts == 1 and sent.next_attempt_at is None
    settle(host, clock, 1)
    assert load(named.acme, data["id"]).status == "delivered"
    settle(host, clock, 2)
    done = ok(clients["alice"].get(f"{V1}/messages/{data['id']}"))
    assert done["status"] == "read" and done["delivered_at"] and done["read_at"]
    assert done["provider_message_id"] == sent.provider_message_id
    assert deliveries(named.acme) == [("message.sent", data["id"], "sent"),
                                      ("message.delivered", data["id"], "delivered"),
                                      ("message.read", data["id"], "read")]
    with tenant_context(named.acme):
        payload = WebhookDelivery.objects.get(event_type="message.read").payload["data"]
    assert payload["to"] == TO and payload["text"] == "Hello" and payload["session"] == "front-desk"
    assert payload["direction"] == "out" and payload["type"] == "text"

    # A late or repeated receipt never moves it backwards.
    host.handle(ProviderEvent(next(iter(host.providers)), EventKind.RECEIPT,
                              {"ids": [sent.provider_message_id], "status": "delivered"}))
    assert load(named.acme, data["id"]).status == "read" and len(deliveries(named.acme)) == 3


@pytest.mark.django_db(transaction=True)
def test_a_receipt_that_beats_the_sent_commit_is_applied_once_the_send_is_recorded(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.get(name="front-desk")
        in_flight = Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net",
                                           status="sending", attempts=1)
    # WhatsApp's receipt for the id the provider just returned, before the drain has recorded it.
    host.handle(ProviderEvent(key, EventKind.RECEIPT, {"ids": ["SIM-EARLY", "SIM-NOT-OURS"], "status": "delivered"}))
    assert len(host.early_receipts) == 1 and host.early_receipts[0][0].data["ids"] == ["SIM-EARLY", "SIM-NOT-OURS"]
    host.retry_early_receipts()  # still sending: kept
    assert load(named.acme, in_flight.pk).status == "sending" and len(host.early_receipts) == 1
    with tenant_context(named.acme):
        sending.record_sent([(Message.objects.get(pk=in_flight.pk), "SIM-EARLY")])
    host.retry_early_receipts()
    assert load(named.acme, in_flight.pk).status == "delivered"
    assert host.early_receipts == []  # nothing is sending any more: the id that matches nothing is dropped

    # With no send in flight, a receipt for an unknown id (a message sent from the phone itself) is not kept.
    host.handle(ProviderEvent(key, EventKind.RECEIPT, {"ids": ["FROM-THE-PHONE"], "status": "read"}))
    assert host.early_receipts == []


def test_a_receipt_racing_the_sent_commit_is_tried_again_not_dropped(named, monkeypatch):
    """The receipt's update looked before the drain's commit made the row `sent` with WhatsApp's id, and the
    lookup after it sees that row: not moved, not ahead of the receipt, so it is early, not done."""
    session = make_session(named.acme)
    with tenant_context(named.acme):
        recorded = Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net",
                                          status="sent", provider_message_id="SIM-RACE", attempts=1)
        ahead = Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net",
                                       status="read", provider_message_id="SIM-READ", attempts=1)
        monkeypatch.setattr(messaging.rows, "run", lambda *args, **kwargs: [])  # the update saw nothing
        result = messaging.apply_receipt(session, {"ids": ["SIM-RACE", "SIM-READ"], "status": "delivered"})
        monkeypatch.undo()
        assert result.early_ids == ["SIM-RACE"] and result.moved == []
        result = messaging.apply_receipt(session, {"ids": result.early_ids, "status": "delivered"})
        assert [m.pk for m in result.moved] == [recorded.pk] and result.early_ids == []
        assert Message.objects.get(pk=ahead.pk).status == "read"


@pytest.mark.django_db(transaction=True)
def test_a_send_failure_is_recorded_with_its_reason(named, clients, host, clock, hooks):
    provider = link_session(clients["alice"], host, clock)
    subscribe(named.acme)
    provider.fail_next_send("rate_limited")
    data = ok(post(clients["alice"], {"session": "front-desk", "to": TO, "text": "Hello"}), 202)
    failed = ok(clients["alice"].get(f"{V1}/messages/{data['id']}"))
    assert failed["status"] == "failed" and failed["failure_reason"].startswith("rate_limited:")
    assert failed["attempts"] == 1 and failed["sent_at"] is None
    assert deliveries(named.acme) == [("message.failed", data["id"], "failed")]


@pytest.mark.django_db(transaction=True)
def test_inbound_messages_are_stored_with_the_senders_phone(named, clients, host, clock, hooks):
    link_session(clients["alice"], host, clock)
    subscribe(named.acme)
    ok(clients["alice"].post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": TO, "text": "Hi there"},
                             format="json"), 202)
    drain(host)
    [message] = ok(clients["bob"].get(f"{V1}/messages?direction=in"))
    assert message["status"] == "received" and message["from"] == TO and message["text"] == "Hi there"
    assert message["chat"] == "6281234567890@s.whatsapp.net" and message["sender_unresolved"] is False
    assert deliveries(named.acme) == [("message.received", message["id"], "received")]

    # An @lid sender without a phone number: its JID is kept and the message says so.
    key = next(iter(host.providers))
    host.handle(ProviderEvent(key, EventKind.MESSAGE, {"id": "LID1", "chat": "12345@lid", "sender": "12345@lid",
                                                       "sender_phone": None, "from_me": False, "type": "text",
                                                       "text": "who am I"}))
    host.handle(ProviderEvent(key, EventKind.MESSAGE, {"id": "LID1", "chat": "12345@lid", "sender": "12345@lid",
                                                       "sender_phone": None, "from_me": False, "type": "text",
                                                       "text": "who am I"}))  # redelivered: stored once
    [lid] = [m for m in ok(clients["bob"].get(f"{V1}/messages?direction=in")) if m["text"] == "who am I"]
    assert lid["sender_unresolved"] is True and lid["from"] == "12345@lid"
    assert count(named.acme, direction="in") == 2
    assert ok(clients["carol"].get(f"{V1}/messages")) == []
    error(clients["carol"].get(f"{V1}/messages/{lid['id']}"), 404, "not_found")


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_resends_stuck_messages_up_to_the_attempt_cap(named, clients, host, clock, hooks, settings):
    settings.WHATSAPP_MESSAGE_MAX_ATTEMPTS = 2
    link_session(clients["alice"], host, clock)
    subscribe(named.acme)
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.get(name="front-desk")
        old = timezone.now() - timedelta(minutes=2)
        # Committed but its task was lost (a worker died): only the sweeper knows about it.
        stuck = Message.objects.create(session=session, direction="out", to_phone=TO,
                                       chat_jid="6281234567890@s.whatsapp.net", text="late", created_at=old)
        fresh = Message.objects.create(session=session, direction="out", to_phone=TO,
                                       chat_jid="6281234567890@s.whatsapp.net", text="new")
        capped = Message.objects.create(session=session, direction="out", to_phone=TO, attempts=2,
                                        chat_jid="6281234567890@s.whatsapp.net", text="capped", next_attempt_at=old)
    assert sweep_queued_messages() == 1  # the stuck one; the capped one fails instead
    assert load(named.acme, stuck.pk).status == "sent" and load(named.acme, stuck.pk).attempts == 1
    # The sweep drains the session: the fresh message (its own wake on its way) goes along, after the older one.
    assert load(named.acme, fresh.pk).status == "sent"
    assert load(named.acme, fresh.pk).sent_at >= load(named.acme, stuck.pk).sent_at
    given_up = load(named.acme, capped.pk)
    assert given_up.status == "failed" and given_up.failure_reason.startswith("not_sent")
    assert ("message.failed", capped.pk, "failed") in deliveries(named.acme)
    assert sweep_queued_messages() == 0

    # A session no host runs: its drain counts the attempt and leaves the message queued for the next sweep.
    host.stop(release=True)
    with tenant_context(named.acme):
        orphan = Message.objects.create(session=session, direction="out", to_phone=TO, created_at=old,
                                        chat_jid="6281234567890@s.whatsapp.net", text="orphan")
    assert sending.route(named.acme.schema_name, session.pk) == "unhosted"
    left = load(named.acme, orphan.pk)
    assert left.status == "queued" and left.attempts == 1 and left.next_attempt_at > timezone.now()
    with tenant_context(named.acme):  # the last attempt: failed at the cap, not queued forever
        sending.count_unhosted(session.pk, now=left.next_attempt_at)
    assert load(named.acme, orphan.pk).status == "failed"


@pytest.mark.django_db(transaction=True)
def test_the_provider_call_runs_outside_any_transaction(named, clients, host, clock, hooks, monkeypatch):
    from django.db import connection as db_connection

    provider = link_session(clients["alice"], host, clock)
    seen = {}
    original = type(provider).send

    def send(self, to, message, **chosen):
        seen["in_transaction"] = db_connection.in_atomic_block
        seen["status_during_send"] = Message.objects.values_list("status", flat=True).get()
        return original(self, to, message, **chosen)

    monkeypatch.setattr(type(provider), "send", send)
    data = ok(post(clients["alice"], {"session": "front-desk", "to": TO, "text": "Hello"}), 202)
    assert seen == {"in_transaction": False, "status_during_send": "sending"}
    assert load(named.acme, data["id"]).status == "sent"


@pytest.mark.django_db(transaction=True)
def test_a_message_left_sending_by_a_dead_host_is_reported_not_resent(named, clients, host, clock, hooks):
    link_session(clients["alice"], host, clock)
    data = ok(post(clients["alice"], {"session": "front-desk", "to": TO, "text": "Hello"}), 202)
    with tenant_context(named.acme):
        Message.objects.filter(pk=data["id"]).update(status="sending", provider_message_id="",
                                                     next_attempt_at=timezone.now() - timedelta(seconds=30))
        assert messaging.sweep_queued() == 0
        assert Message.objects.get(pk=data["id"]).status == "sending"  # not stuck long enough yet
        messaging.sweep_queued(now=timezone.now() + timedelta(minutes=5))
        stuck = Message.objects.get(pk=data["id"])
    assert stuck.status == "failed" and stuck.failure_reason.startswith("host_lost:")
    assert stuck.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_send_while_reconnecting_is_queued_again_not_failed(named, clients, host, clock, hooks, settings):
    settings.WHATSAPP_MESSAGE_MAX_ATTEMPTS = 2
    provider = link_session(clients["alice"], host, clock)
    provider.fail_next_send("not_connected")  # accepted while connected; the link dropped before the host sent it
    data = ok(post(clients["alice"], {"session": "front-desk", "to": TO, "text": "Hello"}), 202)
    waiting = load(named.acme, data["id"])
    assert waiting.status == "queued" and waiting.attempts == 1
    assert waiting.failure_reason.startswith("not_connected")
    with tenant_context(named.acme):
        messaging.sweep_queued(now=waiting.next_attempt_at + timedelta(seconds=1))
    sent = load(named.acme, data["id"])
    assert sent.status == "sent" and sent.attempts == 2 and sent.failure_reason == ""


def latency_counts(client):
    """{histogram name: observation count} read from GET /metrics by prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics", secure=True)
    assert response.status_code == 200
    counts = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name.startswith("switchboard_message_") and sample.name.endswith("_seconds_count"):
                assert "tenant" not in sample.labels  # bounded: no tenant label by default
                counts[sample.name] = sample.value
    return counts


@pytest.mark.django_db(transaction=True)
def test_send_latency_histograms_move_on_sent_and_on_the_first_delivery_receipt(named, clients, host, clock, hooks,
                                                                              settings):
    link_session(clients["alice"], host, clock)
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    from django.test import Client

    scraper = Client()
    accepted, delivered = ("switchboard_message_accept_to_sent_seconds_count",
                           "switchboard_message_sent_to_delivered_seconds_count")
    before = latency_counts(scraper)
    assert accepted in before and delivered in before  # exported before any observation
    data = ok(post(clients["alice"], {"session": "front-desk", "to": TO, "type": "text", "text": "Hello"}), 202)
    assert load(named.acme, data["id"]).status == "sent"
    after_send = latency_counts(scraper)
    assert after_send[accepted] == before[accepted] + 1 and after_send[delivered] == before[delivered]
    settle(host, clock, 1)
    assert load(named.acme, data["id"]).status == "delivered"
    after_receipt = latency_counts(scraper)
    assert after_receipt[delivered] == before[delivered] + 1
    settle(host, clock, 2)  # read: delivered_at was already set, not observed again
    assert load(named.acme, data["id"]).status == "read"
    assert latency_counts(scraper)[delivered] == before[delivered] + 1
