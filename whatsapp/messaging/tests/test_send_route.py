"""How accepted messages reach the provider (whatsapp.messaging.drain): one drain task per burst on the session hosts'
shared queue, drained by the host running the session in that task (no second hop), one drain per session at a
time, in batches sized by the measured send time; elsewhere forwarded to the lease holder, and with no holder the
due messages count an attempt. A batch cut short (the session stopped, the connection dropped) puts back what
was never handed to the provider without counting an attempt."""
import threading

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from whatsapp.host import commands
from whatsapp.host.queues import SHARED_QUEUE
from whatsapp.messaging import drain as sending
from whatsapp.messaging import pacing
from whatsapp.messaging.tasks import drain_session
from whatsapp.models import Message, WhatsAppSession
from whatsapp.tests.support import drain, link_session, ok

pytestmark = pytest.mark.django_db

TO = "+6281234567890"
JID = "6281234567890@s.whatsapp.net"


def post(client, text, to=TO):
    return ok(client.post("/api/v1/messages", {"session": "front-desk", "to": to, "text": text}, format="json"), 202)


def rows(tenant):
    with tenant_context(tenant):
        return {m.text: m for m in Message.objects.filter(direction="out")}


@pytest.mark.django_db(transaction=True)
def test_the_host_running_the_session_sends_in_the_same_task(named, clients, host, clock, monkeypatch):
    alice = clients["alice"]
    link_session(alice, host, clock)
    routed = []
    original = drain_session.apply_async
    monkeypatch.setattr(drain_session, "apply_async",
                        lambda args, **options: routed.append(options.get("queue")) or original(args, **options))

    def no_second_hop(*args, **kwargs):
        raise AssertionError(f"a second hop: {args} {kwargs}")

    monkeypatch.setattr(commands, "send", no_second_hop)
    data = post(alice, "hi")
    drain(host)
    assert routed == [SHARED_QUEUE]
    with tenant_context(named.acme):
        message = Message.objects.get(pk=data["id"])
    assert (message.status, message.attempts) == ("sent", 1) and message.provider_message_id


@pytest.mark.django_db(transaction=True)
def test_a_burst_makes_one_drain_task_and_one_drain_sends_it_in_order(named, clients, host, clock, monkeypatch):
    alice = clients["alice"]
    link_session(alice, host, clock)
    on_its_way = []
    monkeypatch.setattr(drain_session, "apply_async", lambda args, **options: on_its_way.append(args))
    for i in range(5):
        post(alice, f"burst {i}")
    assert len(on_its_way) == 1  # the first commit sent the task; the other four saw it on its way
    assert {m.status for m in rows(named.acme).values()} == {"queued"}

    sent_to_whatsapp = []
    provider = next(iter(host.providers.values()))
    original = type(provider).send
    monkeypatch.setattr(type(provider), "send",
                        lambda self, to, message, **chosen: sent_to_whatsapp.append(message.text)
                        or original(self, to, message, **chosen))
    assert sending.route(*on_its_way[0]) == "here"
    assert sent_to_whatsapp == [f"burst {i}" for i in range(5)]
    assert {m.status for m in rows(named.acme).values()} == {"sent"}

    post(alice, "after")  # the task started, so the next commit wakes a new one
    assert len(on_its_way) == 2


@pytest.mark.django_db(transaction=True)
def test_a_commit_while_the_drain_runs_sends_no_task_and_the_running_drain_takes_it(named, clients, host, clock,
                                                                                   monkeypatch):
    link_session(clients["alice"], host, clock)
    provider = next(iter(host.providers.values()))
    session_id = next(iter(host.providers)).split(":")[1]
    tasks = []
    original_apply = drain_session.apply_async
    monkeypatch.setattr(drain_session, "apply_async",
                        lambda args, **options: tasks.append(args) or original_apply(args, **options))
    original_send = type(provider).send
    committed_meanwhile = []

    def send(self, to, message, **chosen):
        if not committed_meanwhile:  # another request commits a message while this one is being sent
            committed_meanwhile.append(Message.objects.create(
                session_id=session_id, direction="out", to_phone=TO, chat_jid=JID, text="meanwhile"))
            assert sending.wake(named.acme.schema_name, int(session_id)) is False  # a drain is running: no task
        return original_send(self, to, message, **chosen)

    monkeypatch.setattr(type(provider), "send", send)
    post(clients["alice"], "first")
    assert len(tasks) == 1
    assert {m.text: m.status for m in rows(named.acme).values()} == {"first": "sent", "meanwhile": "sent"}
    post(clients["alice"], "later")  # the drain ended and cleared the flag: the next commit wakes a new one
    assert len(tasks) == 2


@pytest.mark.django_db(transaction=True)
def test_one_drain_per_session_at_a_time_and_a_wake_meanwhile_makes_it_go_round_again(
        named, clients, host, clock, monkeypatch):
    link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    entered, release, calls = threading.Event(), threading.Event(), []

    def slow_drain(schema_name, session_id, provider, window=None, fence=None):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            entered.set()
            release.wait(10)
        return 0

    monkeypatch.setattr(sending, "drain", slow_drain)
    first = threading.Thread(target=host.drain, args=(key,), name="first")
    first.start()
    assert entered.wait(10)
    host.drain(key)  # returns at once: the running drain will go round again
    assert calls == ["first"]
    release.set()
    first.join(10)
    assert calls == ["first", "first"]


@pytest.mark.django_db(transaction=True)
def test_claims_grow_with_the_measured_send_time_and_a_batch_is_recorded_together(named, clients, host, clock,
                                                                                 monkeypatch):
    link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    provider = host.providers[key]
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.get(name="front-desk")
        for i in range(30):
            Message.objects.create(session=session, direction="out", to_phone=TO, chat_jid=JID, text=f"m{i}")
    claims = []
    original = sending.claim
    monkeypatch.setattr(sending, "claim", lambda *args, **kwargs: claims.append(args[-1]) or original(*args, **kwargs))
    window = sending.SendWindow()
    assert sending.drain(named.acme.schema_name, session.pk, provider, window=window) == 30
    # One message first (nothing measured yet), then the rest in one claim; then only empty ones: the linger, the
    # look before the wake flag is cleared and the one after (for what committed in between).
    assert claims[0] == 1 and 29 <= claims[1] <= sending.BATCH_MAX
    assert {m.status for m in rows(named.acme).values()} == {"sent"}
    assert len({m.provider_message_id for m in rows(named.acme).values()}) == 30

    window = sending.SendWindow()
    window.observe(10, 10 * 0.3)  # a real WhatsApp round trip per send: claims of one
    assert window.size() == 1
    for _ in range(20):  # the simulator's sends: the average follows, claims grow to the cap
        window.observe(100, 0.001)
    assert window.size() == sending.BATCH_MAX


def test_without_a_host_running_the_session_the_message_stays_queued_with_the_attempt_counted(
        named, clients, settings, django_capture_on_commit_callbacks):
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
    with django_capture_on_commit_callbacks(execute=True):
        data = post(clients["alice"], "hi")
    with tenant_context(named.acme):
        message = Message.objects.get(pk=data["id"])
    assert (message.status, message.attempts) == ("queued", 1)
    assert message.next_attempt_at is not None  # the sweeper sends it again once a host runs the session


def test_a_batch_whose_session_stopped_meanwhile_goes_back_to_the_queue_unsent_and_uncounted(named):
    """Claimed rows are `sending`; if the session stopped on this host before they were handed over, they are
    queued again (due at once) with their attempt undone, not left `sending` (which the sweeper would report as
    possibly received)."""
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
        for text in ("a", "b"):
            Message.objects.create(session=session, direction="out", to_phone=TO, chat_jid=JID, text=text)
        claimed = sending.claim(session, pacing.current_policy(), sending.timezone.now(), 10)
        assert [m.status for m in claimed] == ["sending", "sending"] and [m.attempts for m in claimed] == [1, 1]
        outcome = sending.send_claimed(None, claimed)
        sending.record(session, outcome)
    assert {(m.status, m.attempts, m.next_attempt_at) for m in rows(named.acme).values()} == {("queued", 0, None)}


@pytest.mark.django_db(transaction=True)
def test_a_dropped_connection_mid_batch_counts_one_attempt_and_connecting_again_sends_the_rest(
        named, clients, host, clock, settings):
    settings.WHATSAPP_MESSAGE_MAX_ATTEMPTS = 3
    link_session(clients["alice"], host, clock)
    key = next(iter(host.providers))
    provider = host.providers[key]
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.get(name="front-desk")
        for text in ("one", "two", "three"):
            Message.objects.create(session=session, direction="out", to_phone=TO, chat_jid=JID, text=text)
    calls = []
    original = type(provider).send

    def flaky(to, message, **chosen):
        calls.append(message.text)
        if message.text == "two":
            raise sending_error("not_connected")
        return original(provider, to, message, **chosen)

    provider.send = flaky
    window = sending.SendWindow()
    window.observe(1, 0.0001)  # claims of the whole queue
    sending.drain(named.acme.schema_name, session.pk, provider, window=window)
    assert calls == ["one", "two"]  # the drain stops at a temporary error
    after = rows(named.acme)
    assert (after["one"].status, after["one"].attempts) == ("sent", 1)
    assert (after["two"].status, after["two"].attempts) == ("queued", 1)
    assert after["two"].failure_reason.startswith("not_connected") and after["two"].next_attempt_at
    assert (after["three"].status, after["three"].attempts, after["three"].next_attempt_at) == ("queued", 0, None)

    del provider.send
    # The session's next CONNECTED wakes the drain: what was never tried and the one that found the connection
    # down both go now (it waited for the connection, not for its retry time).
    provider.simulate_disconnect()
    drain(host)  # DISCONNECTED (reconnecting)
    clock.advance(5)  # reconnected after the delay
    drain(host)  # CONNECTED: the drain runs
    later = rows(named.acme)
    assert later["three"].status == "sent"
    assert (later["two"].status, later["two"].attempts) == ("sent", 2)


def sending_error(code):
    from whatsapp.providers.base import ProviderError

    return ProviderError(code, "simulated")


def test_the_wake_key_carries_the_database_and_schema():
    key = sending._wake_key("t_test_acme", 7)
    assert key.endswith(":t_test_acme:7") and connection.settings_dict["NAME"] in key
