"""POST /api/v1/messages/batch: up to BATCH_MAX messages in one request, validated first and queued together (one
insert) or not at all, each error named by its index; Idempotency-Key over the whole batch; the rate limit
counting every message; the drain sending them in order. alice owns Acme, bob is a member, carol owns Globex."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import ratelimit
from whatsapp.models import Conversation, Message, WhatsAppSession
from whatsapp.tests.support import error, link_session, ok

V1 = "/api/v1"
TO = "+6281234567890"
OTHER = "+4915112345678"
GROUP = "120363025246125486@g.us"


def post(client, messages, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"{V1}/messages/batch", {"messages": messages}, format="json", **headers)


def text(body, to=TO, session="front-desk"):
    return {"session": session, "to": to, "text": body}


def make_session(tenant, name="front-desk", status=WhatsAppSession.Status.CONNECTED):
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, phone="+14155550123", status=status)


def outgoing(tenant):
    with tenant_context(tenant):
        return list(Message.objects.filter(direction="out").order_by("pk"))


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1


def test_a_batch_is_queued_in_order_with_one_insert(named, clients, django_capture_on_commit_callbacks):
    make_session(named.acme)
    batch = [text("one"), text("two", OTHER), {"session": "front-desk", "to": GROUP, "type": "location",
                                              "latitude": -6.2, "longitude": 106.8, "text": "Office"},
             text("three")]
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as callbacks:
        data = ok(post(clients["bob"], batch), 202)
    assert [m["status"] for m in data["messages"]] == ["queued"] * 4
    assert [m["to"] for m in data["messages"]] == [TO, OTHER, GROUP, TO]
    assert [m["text"] for m in data["messages"]] == ["one", "two", "", "three"]
    assert data["messages"][2]["location"] == {"latitude": -6.2, "longitude": 106.8, "name": "Office"}
    assert [m.pk for m in outgoing(named.acme)] == [m["id"] for m in data["messages"]]
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "whatsapp_message"')]
    assert len(inserts) == 1
    assert len(callbacks) == 1  # one session: one wake
    with tenant_context(named.acme):
        assert Conversation.objects.count() == 3  # one per chat, ready for the drain


def test_a_batch_costs_the_same_statements_whatever_its_size(named, clients, django_capture_on_commit_callbacks):
    """A regression guard on the bulk path, not a timing: per message there is validation, not SQL; per number
    one lookup (its session, conversation and blocked check together), and a new number's contact and
    conversation."""
    make_session(named.acme)
    plan = named.acme.subscription.plan  # the plan's own rate would refuse 100 at once
    plan.messages_per_minute = -1
    plan.save(update_fields=["messages_per_minute"])
    numbers = [TO, OTHER]

    def statements(count):
        batch = [text(f"m{i}", numbers[i % 2]) for i in range(count)]
        with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=False):
            ok(post(clients["alice"], batch), 202)
        return len(queries.captured_queries)

    statements(2)  # the numbers' contacts and conversations
    assert statements(messaging.BATCH_MAX) == statements(2)


@pytest.mark.django_db(transaction=True)
def test_the_drain_sends_a_batch_in_order(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    data = ok(post(clients["alice"], [text(f"m{i}") for i in range(10)]), 202)
    sent = outgoing(named.acme)
    assert [m.status for m in sent] == ["sent"] * 10
    assert [m.text for m in sorted(sent, key=lambda m: (m.sent_at, m.pk))] == [f"m{i}" for i in range(10)]
    assert [m.pk for m in sent] == [m["id"] for m in data["messages"]]
    with tenant_context(named.acme):
        assert Conversation.objects.get().last_message_preview == "m9"


def test_one_invalid_message_rejects_the_batch_naming_every_error(named, clients, settings):
    settings.WHATSAPP_BLOCKED_NUMBERS = ["442071838750"]
    make_session(named.acme)
    make_session(named.acme, "asleep", WhatsAppSession.Status.DISCONNECTED)
    batch = [text("fine"), text("bad number", "12"), text("blocked", "+442071838750"), {"session": "front-desk"},
             text("sleeping", session="asleep"), {**text("x"), "type": "sticker"}, text("fine too")]
    err = error(post(clients["alice"], batch), 400, "invalid_messages")
    assert [(e["index"], e["code"]) for e in err["details"]["errors"]] == [
        (1, "invalid_recipient"), (2, "blocked_recipient"), (3, "validation_error"), (4, "session_not_connected"),
        (5, "unsupported_type")]
    assert err["details"]["errors"][3]["status"] == 409 and err["details"]["errors"][3]["details"] == {
        "status": "disconnected"}
    assert "5 of 7 messages" in err["message"] and "nothing was queued" in err["message"]
    assert outgoing(named.acme) == []
    # Errors that all share a status answer with it (a 404 is always not_found).
    err = error(post(clients["alice"], [text("a", session="nope"), text("b", session="nope")]), 404, "not_found")
    assert [e["code"] for e in err["details"]["errors"]] == ["not_found", "not_found"]


@pytest.mark.parametrize("payload,code", [
    ({}, "missing_messages"),
    ({"messages": []}, "missing_messages"),
    ({"messages": "hello"}, "missing_messages"),
    ({"messages": ["hello"]}, "invalid_messages"),
    ({"messages": [text(str(i)) for i in range(messaging.BATCH_MAX + 1)]}, "batch_too_large"),
])
def test_malformed_batches_are_refused(named, clients, payload, code):
    make_session(named.acme)
    error(clients["alice"].post(f"{V1}/messages/batch", payload, format="json"), 400, code)
    assert outgoing(named.acme) == []


def test_files_go_one_message_at_a_time(named, clients):
    make_session(named.acme)
    err = error(post(clients["alice"], [{**text("x"), "type": "image", "file": "data"}]), 400, "invalid_messages")
    assert err["details"]["errors"][0]["code"] == "unexpected_file"


def test_the_idempotency_key_covers_the_whole_batch(named, clients):
    make_session(named.acme)
    batch = [text("a"), text("b")]
    first = ok(post(clients["alice"], batch, key="campaign-7"), 202)
    again = post(clients["bob"], batch, key="campaign-7")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert [m["id"] for m in ok(again)["messages"]] == [m["id"] for m in first["messages"]]
    for changed in ([text("a"), text("c")], [text("a")], [text("a"), text("b"), text("c")]):
        err = error(post(clients["alice"], changed, key="campaign-7"), 409, "idempotency_conflict")
        assert err["details"]["message_ids"] == sorted(m["id"] for m in first["messages"])
    assert len(outgoing(named.acme)) == 2
    error(post(clients["alice"], batch, key="k" * 241), 400, "invalid_idempotency_key")


def test_the_rate_limit_counts_every_message_of_a_batch(named, clients, settings, monkeypatch):
    monkeypatch.setattr(ratelimit, "_clock", lambda: 1_900_000_000.0)
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = 5
    settings.WHATSAPP_RATE_LIMIT_WINDOW = 60
    ratelimit.reset(named.acme)
    make_session(named.acme)
    try:
        ok(post(clients["alice"], [text(str(i)) for i in range(4)]), 202)
        response = post(clients["alice"], [text("x"), text("y")])
        error(response, 429, "rate_limited")
        assert int(response["Retry-After"]) >= 1
        ok(post(clients["alice"], [text("last")]), 202)  # the one that fits
        err = error(post(clients["alice"], [text(str(i)) for i in range(6)]), 400, "batch_over_rate_limit")
        assert err["details"] == {"limit": 5, "window": 60, "count": 6}
        assert len(outgoing(named.acme)) == 5
    finally:
        ratelimit.reset(named.acme)


def test_other_tenants_sessions_are_not_found_and_unpaid_tenants_cannot_send(named, clients):
    make_session(named.acme)
    err = error(post(clients["carol"], [text("hi")]), 404, "not_found")  # Acme's session name means nothing
    assert err["details"]["errors"][0]["code"] == "not_found"
    assert outgoing(named.globex) == []
    Subscription.objects.filter(tenant=named.acme).update(status="read_only")
    error(post(clients["alice"], [text("hi")]), 402, "payment_required")
    assert outgoing(named.acme) == []
