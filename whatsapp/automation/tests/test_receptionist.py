"""The receptionist on the simulator: business hours across a DST change, the away message, the greeting once, keyword
rules by priority with their cooldown, the fallback, handoff keywords, and the loop guards (our own numbers, groups,
status broadcasts, the per-contact cap: two of our numbers answering each other stop there).

Inbound messages come from the simulated phone (the test-helper API) through an in-process session host; answers go
out through the sending pipeline (the drain hands them to the simulator, whose outbox the tests read).
alice owns Acme, bob is a member of Acme, carol owns Globex.
"""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from whatsapp.automation import actions, engine, schedule
from whatsapp.automation.models import AutomationLog, Handoff, KeywordRule, Receptionist
from whatsapp.models import Message, WebhookDelivery, WhatsAppSession
from whatsapp.webhooks import actions as webhook_actions
from whatsapp.webhooks import delivery as webhook_delivery
from whatsapp.providers import simulator_outbox
from whatsapp.providers.base import EventKind, ProviderEvent
from whatsapp.tests.support import drain, link_session, ok, settle

V1 = "/api/v1"
CUSTOMER = "+6281234567890"
CHAT = "6281234567890@s.whatsapp.net"
pytestmark = pytest.mark.django_db(transaction=True)


def inbound(client, host, text, sender=CUSTOMER, session="front-desk"):
    ok(client.post(f"{V1}/test-helpers/sessions/{session}/inbound", {"from": sender, "text": text}, format="json"),
       202)
    drain(host)


def answers(tenant, chat=CHAT):
    """The automatic messages sent to `chat`, oldest first: (kind, text, status)."""
    with tenant_context(tenant):
        return [(row.kind, row.reply.text, row.reply.status)
                for row in AutomationLog.objects.filter(chat_jid=chat, reply__isnull=False)
                .select_related("reply").order_by("id")]


def configure(tenant, **changes):
    with tenant_context(tenant):
        return actions.update_settings(tenant, acting_user=None, changes={"enabled": True, **changes})


def rule(tenant, **fields):
    with tenant_context(tenant):
        return actions.create_rule(tenant, acting_user=None, fields={"name": fields.get("pattern", "r"), **fields})


# --- business hours -------------------------------------------------------------------------------------------------


def test_business_hours_follow_the_wall_clock_across_a_dst_change():
    week = [{"day": day, "start": "09:00", "end": "17:00"} for day in schedule.DAYS[:5]]
    berlin = "Europe/Berlin"
    # Friday 27 March 2026, 08:30 UTC = 09:30 CET (open); Monday 30 March, 07:30 UTC = 09:30 CEST (open) while
    # 07:30 UTC the Friday before was 08:30 CET (closed): the opening hour moved with the clocks.
    assert schedule.is_open(week, [], berlin, datetime(2026, 3, 27, 8, 30, tzinfo=dt_timezone.utc))
    assert not schedule.is_open(week, [], berlin, datetime(2026, 3, 27, 7, 30, tzinfo=dt_timezone.utc))
    assert schedule.is_open(week, [], berlin, datetime(2026, 3, 30, 7, 30, tzinfo=dt_timezone.utc))
    assert not schedule.is_open(week, [], berlin, datetime(2026, 3, 30, 6, 30, tzinfo=dt_timezone.utc))
    # Closing: 16:59 local is open, 17:00 is not, on both sides of the change.
    assert schedule.is_open(week, [], berlin, datetime(2026, 3, 27, 15, 59, tzinfo=dt_timezone.utc))
    assert not schedule.is_open(week, [], berlin, datetime(2026, 3, 30, 15, 0, tzinfo=dt_timezone.utc))
    # The weekend and a holiday are closed; no schedule at all is open around the clock.
    assert not schedule.is_open(week, [], berlin, datetime(2026, 3, 28, 10, 0, tzinfo=dt_timezone.utc))
    assert not schedule.is_open(week, ["2026-03-30"], berlin, datetime(2026, 3, 30, 8, 0, tzinfo=dt_timezone.utc))
    assert schedule.is_open([], [], berlin, datetime(2026, 3, 28, 3, 0, tzinfo=dt_timezone.utc))


@pytest.mark.parametrize("intervals, why", [
    ([{"day": "mon", "start": "10:00", "end": "09:00"}], "before it starts"),
    ([{"day": "mon", "start": "09:00", "end": "12:00"}, {"day": "mon", "start": "11:00", "end": "13:00"}], "overlaps"),
    ([{"day": "moon", "start": "09:00", "end": "12:00"}], "day is one of"),
    ([{"day": "mon", "start": "9am", "end": "12:00"}], "HH:MM"),
    ([{"day": "mon", "start": "09:00"}], "exactly day, start and end"),
])
def test_invalid_schedules_are_refused(named, intervals, why):
    with pytest.raises(Exception) as raised:
        configure(named.acme, schedule=intervals)
    assert raised.value.code == "invalid_schedule" and why in raised.value.message
    with pytest.raises(Exception) as raised:
        configure(named.acme, time_zone="Mars/Olympus")
    assert raised.value.code == "invalid_time_zone"


# --- answers through the pipeline -----------------------------------------------------------------------------------


def test_outside_hours_the_away_message_goes_out_once_per_cooldown(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    now = datetime.now(dt_timezone.utc)
    closed_today = schedule.DAYS[(now.weekday() + 3) % 7]  # open only on another day: closed now
    configure(named.acme, schedule=[{"day": closed_today, "start": "09:00", "end": "10:00"}],
              away_message="We are closed; back at 9.", greeting="Welcome!", fallback="Thanks, we'll answer soon.")
    inbound(clients["alice"], host, "Hello?")
    assert answers(named.acme) == [("away", "We are closed; back at 9.", "sent")]
    inbound(clients["alice"], host, "Anyone?")  # within the cooldown: no second away message, no fallback either
    assert len(answers(named.acme)) == 1
    # The reply went out through the pipeline: handed to the simulated phone, recorded as sent, marked automatic.
    with tenant_context(named.acme):
        reply = Message.objects.get(direction="out")
        assert reply.provider_message_id.startswith("SIM") and reply.automation.kind == "away"
        assert reply.conversation.chat_jid == CHAT


def test_the_greeting_goes_to_a_contacts_first_message_only_and_the_fallback_after(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    configure(named.acme, greeting="Welcome to Acme!", fallback="We'll get back to you.", cooldown_minutes=0)
    inbound(clients["alice"], host, "Hi")
    inbound(clients["alice"], host, "Are you there?")
    assert [kind for kind, _, _ in answers(named.acme)] == ["greeting", "fallback"]


def test_keyword_rules_answer_by_priority_case_insensitively_with_a_cooldown(named, clients, host, clock, settings):
    settings.AUTOREPLY_MAX_PER_CONTACT_PER_HOUR = 10
    link_session(clients["alice"], host, clock)
    configure(named.acme, fallback="Fallback", cooldown_minutes=0)
    rule(named.acme, name="any price", match="contains", pattern="price", reply_text="Prices: see acme.test",
         priority=20)
    rule(named.acme, name="exact price", match="equals", pattern="PRICE LIST", reply_text="Here is the list",
         priority=10)
    rule(named.acme, name="order", match="regex", pattern=r"order\s*#?\d{4,}", reply_text="Checking your order",
         priority=30)
    rule(named.acme, name="hello", match="starts_with", pattern="hello", reply_text="Hello to you", priority=40)
    inbound(clients["alice"], host, "price list")
    inbound(clients["alice"], host, "What is the PRICE of a box?")
    inbound(clients["alice"], host, "where is ORDER #12345")
    inbound(clients["alice"], host, "hello there")
    assert [text for _, text, _ in answers(named.acme)] == [
        "Here is the list", "Prices: see acme.test", "Checking your order", "Hello to you"]
    inbound(clients["alice"], host, "price again?")  # the rule answered within its cooldown: silence
    assert len(answers(named.acme)) == 4
    with tenant_context(named.acme):
        skipped = AutomationLog.objects.filter(kind="skipped").get()
        assert skipped.rule.name == "any price" and skipped.detail.startswith("cooldown")


def test_a_catastrophic_regex_times_out_as_no_match(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    configure(named.acme, fallback="Fallback")
    rule(named.acme, name="evil", match="regex", pattern=r"^(a|aa)+$", reply_text="never")
    started = datetime.now(dt_timezone.utc)
    inbound(clients["alice"], host, "a" * 4000 + "!")
    assert datetime.now(dt_timezone.utc) - started < timedelta(seconds=2)
    assert [kind for kind, _, _ in answers(named.acme)] == ["fallback"]
    with pytest.raises(Exception) as raised:
        rule(named.acme, name="broken", match="regex", pattern="(unclosed", reply_text="x")
    assert raised.value.code == "invalid_pattern"


def test_a_handoff_keyword_flags_the_conversation_and_silences_automation(named, clients, host, clock, monkeypatch,
                                                                          settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    monkeypatch.setattr(webhook_delivery, "attempt", lambda delivery, now=None: None)  # stored, not sent
    link_session(clients["alice"], host, clock)
    configure(named.acme, fallback="Fallback", handoff_keywords=["human", "agent"],
              handoff_reply="A person will answer you shortly.", cooldown_minutes=0)
    with tenant_context(named.acme):
        webhook_actions.create_endpoint(named.acme, acting_user=None, url="http://127.0.0.1:9/desk",
                                        events=["conversation.handoff_requested"])
    inbound(clients["alice"], host, "I want a HUMAN please")
    inbound(clients["alice"], host, "hello?")
    assert answers(named.acme) == [("handoff", "A person will answer you shortly.", "sent")]
    with tenant_context(named.acme):  # the escalation went to the tenant's webhook
        [delivery] = WebhookDelivery.objects.filter(event_type="conversation.handoff_requested")
        assert delivery.payload["data"]["reason"] == "contact_asked"
        assert delivery.payload["data"]["text"] == "I want a HUMAN please" and delivery.payload["data"]["until"]
    with tenant_context(named.acme):
        assert AutomationLog.objects.filter(kind="skipped", detail__startswith="handoff").count() == 1
        session = WhatsAppSession.objects.get()
        conversation = session.conversations.get()
        handoff = actions.active_handoff(session, conversation)
        assert handoff.requested
        # Switched off, automation answers again.
        actions.set_handoff(named.acme, session, conversation=conversation, on=False, acting_user=named.alice)
    inbound(clients["alice"], host, "still there?")
    assert [kind for kind, _, _ in answers(named.acme)] == ["handoff", "fallback"]


# --- loop and ban safety ----------------------------------------------------------------------------------------------


def test_two_of_our_numbers_answering_each_other_stop_at_the_cap(named, clients, host, clock, settings):
    """Acme's number and Globex's number both answer everything: each gets at most the cap of automatic messages."""
    settings.AUTOREPLY_MAX_PER_CONTACT_PER_HOUR = 3
    acme_phone, globex_phone = "+14155550123", "+14155550199"
    acme = link_session(clients["alice"], host, clock, phone=acme_phone)
    globex = link_other(clients["carol"], host, clock, named.globex, "globex-desk", globex_phone)
    configure(named.acme, fallback="Acme here, how can we help?", cooldown_minutes=0)
    configure(named.globex, fallback="Globex bot: thanks for writing!", cooldown_minutes=0)
    # Globex's phone writes first; from then on what one number sends arrives at the other as an inbound message.
    acme.simulate_inbound(globex_phone, "hi")
    drain(host)
    for _ in range(20):
        moved = False
        for sender, receiver, sender_phone in ((acme, globex, acme_phone), (globex, acme, globex_phone)):
            for sent in sender_outbox(sender):
                receiver.simulate_inbound(sender_phone, sent)
                moved = True
        drain(host)
        if not moved:
            break
    acme_chat, globex_chat = "14155550199@s.whatsapp.net", "14155550123@s.whatsapp.net"
    assert len(answers(named.acme, acme_chat)) == 3 and len(answers(named.globex, globex_chat)) == 3
    with tenant_context(named.acme):
        assert AutomationLog.objects.filter(kind="skipped", detail__startswith="rate_cap").exists()


_seen = {}


def link_other(client, host, clock, tenant, name, phone):
    """link_session for a second tenant (whose session ids start at 1 too): the provider found by schema."""
    created = ok(client.post(f"{V1}/sessions", {"name": name}, format="json"), 201)
    ok(client.post(f"{V1}/sessions/{name}/start", {}, format="json"), 202)
    settle(host, clock)
    ok(client.post(f"{V1}/test-helpers/sessions/{name}/scan", {"phone": phone}, format="json"), 202)
    settle(host, clock)
    settle(host, clock)
    return host.provider(f"{tenant.schema_name}:{created['id']}")


def sender_outbox(provider):
    """Texts the provider sent since the last call (the simulator's outbox)."""
    sent = [m for m in simulator_outbox.read(provider.store_dir) if m["session"] == provider.session_key]
    done = _seen.setdefault(provider.session_key, 0)
    _seen[provider.session_key] = len(sent)
    return [m["text"] for m in sent[done:]]


def test_no_answer_to_our_own_numbers_groups_status_or_messages_from_the_phone(named, clients, host, clock):
    provider = link_session(clients["alice"], host, clock)
    link_session(clients["alice"], host, clock, name="second", phone="+14155550777")
    configure(named.acme, fallback="Fallback", cooldown_minutes=0)
    rule(named.acme, name="group rule", pattern="menu", reply_text="Our menu", in_groups=True)
    inbound(clients["alice"], host, "hello from our other number", sender="+14155550777")
    key = provider.session_key
    group = "120363025246125486@g.us"
    for data in ({"id": "G1", "chat": group, "sender": CHAT, "sender_phone": CUSTOMER, "text": "hi all"},
                 {"id": "G2", "chat": group, "sender": CHAT, "sender_phone": CUSTOMER, "text": "the menu?"},
                 {"id": "S1", "chat": "status@broadcast", "sender": CHAT, "sender_phone": CUSTOMER, "text": "story"},
                 {"id": "P1", "chat": CHAT, "sender": CHAT, "sender_phone": CUSTOMER, "text": "hi", "from_me": True}):
        host.handle(ProviderEvent(key, EventKind.MESSAGE, {"from_me": False, "type": "text", **data}))
    assert answers(named.acme, "14155550777@s.whatsapp.net") == []
    assert answers(named.acme, group) == [("rule", "Our menu", "sent")]  # only the rule that allows groups
    assert answers(named.acme) == []
    with tenant_context(named.acme):
        assert AutomationLog.objects.filter(detail__startswith="own_number").count() == 1
    # A redelivered event is not answered twice.
    host.handle(ProviderEvent(key, EventKind.MESSAGE, {"from_me": False, "type": "text", "id": "G2", "chat": group,
                                                       "sender": CHAT, "sender_phone": CUSTOMER, "text": "the menu?"}))
    assert len(answers(named.acme, group)) == 1


def test_an_opt_out_word_gets_the_broadcast_confirmation_not_an_automatic_answer(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    configure(named.acme, greeting="Welcome!", fallback="Fallback")
    inbound(clients["alice"], host, "STOP")
    assert answers(named.acme) == []
    with tenant_context(named.acme):
        assert AutomationLog.objects.filter(detail__startswith="opt_out").count() == 1
        assert Message.objects.filter(direction="out").count() == 1  # the opt-out confirmation only


def test_staff_replying_from_the_phone_or_the_dashboard_hands_over_until_the_handoff_expires(
        named, clients, host, clock, as_user):
    provider = link_session(clients["alice"], host, clock)
    configure(named.acme, fallback="Fallback", cooldown_minutes=0, handoff_minutes=30)
    inbound(clients["alice"], host, "hi")
    with tenant_context(named.acme):
        ours = Message.objects.get(direction="out").provider_message_id
    # WhatsApp echoes what the linked phone sends: our own automatic answer is not a person talking...
    host.handle(ProviderEvent(provider.session_key, EventKind.MESSAGE, {
        "id": ours, "chat": CHAT, "sender": CHAT, "from_me": True, "type": "text", "text": "Fallback"}))
    inbound(clients["alice"], host, "still there?")
    assert [kind for kind, _, _ in answers(named.acme)] == ["fallback", "fallback"]
    # ...a message typed on the phone itself is.
    host.handle(ProviderEvent(provider.session_key, EventKind.MESSAGE, {
        "id": "PHONE1", "chat": CHAT, "sender": CHAT, "from_me": True, "type": "text", "text": "Hi, Ann here"}))
    inbound(clients["alice"], host, "oh hi Ann")
    assert len(answers(named.acme)) == 2
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.get()
        conversation = session.conversations.get()
        handoff = actions.active_handoff(session, conversation)
        assert handoff.reason == "staff_phone" and not handoff.requested
        assert AutomationLog.objects.filter(kind="handoff", detail="staff replied from the phone").count() == 1
        # Idle past its minutes, the handoff expires and automation answers again.
        Handoff.objects.update(until=timezone.now() - timedelta(seconds=1))
    inbound(clients["alice"], host, "anyone?")
    assert len(answers(named.acme)) == 3
    # A reply from the conversation page hands it over too.
    page = as_user(named.bob).post(f"/conversations/{conversation.pk}/", {"action": "send", "text": "Bob here"})
    assert page.status_code in (200, 202, 302)
    with tenant_context(named.acme):
        assert actions.active_handoff(session, conversation).reason == "staff_dashboard"
    inbound(clients["alice"], host, "thanks Bob")
    assert len(answers(named.acme)) == 3


def test_another_tenants_rules_never_answer(named, clients, host, clock):
    link_session(clients["alice"], host, clock)
    configure(named.globex, fallback="Globex fallback")
    rule(named.globex, name="globex", pattern="hello", reply_text="Globex says hi")
    inbound(clients["alice"], host, "hello")
    assert answers(named.acme) == []


def test_the_cached_settings_follow_any_change_of_the_rows(named, clients, host, clock):
    """The engine keeps settings and rules per schema until their version moves: an UPDATE that leaves updated_at
    alone (the admin, a data migration, a bulk update) is seen at the next message too."""
    link_session(clients["alice"], host, clock)
    configure(named.acme, fallback="We'll get back to you.", cooldown_minutes=0)
    rule(named.acme, pattern="price", reply_text="From $9.", cooldown_minutes=0)
    inbound(clients["alice"], host, "price?")
    with tenant_context(named.acme):
        KeywordRule.objects.update(reply_text="From $12.")
    inbound(clients["alice"], host, "price?")
    with tenant_context(named.acme):
        Receptionist.objects.update(enabled=False)
    inbound(clients["alice"], host, "price?")
    assert [text for _, text, _ in answers(named.acme)] == ["From $9.", "From $12."]
