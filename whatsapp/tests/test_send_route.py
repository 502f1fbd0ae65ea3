"""Where an accepted message's send task goes: to the session hosts' shared queue, and the host that runs the
session dispatches (pacing slot, attempt counted in the row) and sends in that one task, without a second hop
through its command queue. Elsewhere (no host runs the session) dispatch forwards to the lease holder as the
sweeper's tasks do, and with no holder the message stays queued with the attempt counted."""
import pytest
from django_tenants.utils import tenant_context

from whatsapp.host import commands
from whatsapp.host.queues import SHARED_QUEUE
from whatsapp.models import Message, WhatsAppSession
from whatsapp.tasks import send_message
from whatsapp.tests.support import drain, link_session, ok

pytestmark = pytest.mark.django_db

TO = "+6281234567890"


@pytest.mark.django_db(transaction=True)
def test_the_host_running_the_session_sends_in_the_same_task(named, clients, host, clock, monkeypatch):
    alice = clients["alice"]
    link_session(alice, host, clock)
    routed = []
    original = send_message.apply_async
    monkeypatch.setattr(send_message, "apply_async",
                        lambda args, **options: routed.append(options.get("queue")) or original(args, **options))

    def no_second_hop(*args, **kwargs):
        raise AssertionError(f"a second hop: {args} {kwargs}")

    monkeypatch.setattr(commands, "send", no_second_hop)
    data = ok(alice.post("/api/v1/messages", {"session": "front-desk", "to": TO, "text": "hi"}, format="json"), 202)
    drain(host)
    assert routed == [SHARED_QUEUE]
    with tenant_context(named.acme):
        message = Message.objects.get(pk=data["id"])
    assert (message.status, message.attempts) == ("sent", 1) and message.provider_message_id


def test_without_a_host_running_the_session_the_message_stays_queued_with_the_attempt_counted(
        named, clients, settings, django_capture_on_commit_callbacks):
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1
    with tenant_context(named.acme):
        WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
    with django_capture_on_commit_callbacks(execute=True):
        data = ok(clients["alice"].post("/api/v1/messages", {"session": "front-desk", "to": TO, "text": "hi"},
                                        format="json"), 202)
    with tenant_context(named.acme):
        message = Message.objects.get(pk=data["id"])
    assert (message.status, message.attempts) == ("queued", 1)
    assert message.next_attempt_at is not None  # the sweeper sends it again once a host runs the session


def test_a_message_claimed_by_dispatch_whose_session_stopped_meanwhile_goes_back_to_the_queue(named):
    """dispatch on the host moves the row to sending in the transaction that counts the attempt; if the session
    stopped on this host before the send, the message is queued again (unsent: the sweeper retries it), not left
    `sending` (which the sweeper would report as possibly received)."""
    from whatsapp import messaging

    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
        message = Message.objects.create(session=session, direction="out", status="sending", to_phone=TO,
                                         chat_jid="6281234567890@s.whatsapp.net", text="hi", attempts=1)
    assert messaging.send_on_host(named.acme.schema_name, session.pk, None, message.pk, claimed=message) is None
    with tenant_context(named.acme):
        message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 1)
