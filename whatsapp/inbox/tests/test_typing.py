"""Typing indicators: while a member writes in a conversation, the contact's phone shows "typing…" — the page or
the API asks, the session host sends the chat presence through the provider (the simulator keeps what the phone
shows, read back by the test-helper API). Viewers may not; another tenant's conversation is 404; a number that is
not connected is 409.
"""
import pytest
from django_tenants.utils import tenant_context

from accounts.models import Membership
from conftest import make_user
from whatsapp.models import Conversation, WhatsAppSession
from whatsapp.tests.support import error, link_session, ok, settle

pytestmark = pytest.mark.django_db(transaction=True)  # the session host commits on its own threads

V1 = "/api/v1"
CONTACT = "+6281234567890"
CHAT = "6281234567890@s.whatsapp.net"


def shown(client):
    return {entry["chat"]: entry for entry in ok(client.get(f"{V1}/test-helpers/sessions/front-desk/chat-presence"))}


def test_typing_reaches_the_contacts_phone(named, clients, host, clock, api_as, client, settings):
    settings.WHATSAPP_STORE_DIR = host.store_dir  # where the test helper reads what the simulated phone shows
    link_session(clients["alice"], host, clock)
    ok(clients["alice"].post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": CONTACT, "text": "Hi"},
                             format="json"), 202)
    settle(host, clock)
    with tenant_context(named.acme):
        conversation = Conversation.objects.get()
    assert shown(clients["bob"]) == {}

    answer = ok(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/typing", {"state": "composing"},
                                    format="json"), 202)
    assert answer == {"conversation_id": conversation.pk, "state": "composing"}
    assert shown(clients["bob"])[CHAT]["typing"] is True
    ok(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/typing", {"state": "paused"}, format="json"), 202)
    assert shown(clients["bob"])[CHAT] | {"at": None} == {"chat": CHAT, "state": "paused", "typing": False,
                                                           "at": None}

    # The conversation page's composer does the same (a POST answered in JSON).
    client.force_login(named.bob)
    typed = client.post(f"/conversations/{conversation.pk}/", {"action": "typing", "state": "composing"},
                        HTTP_ACCEPT="application/json")
    assert typed.status_code == 200 and typed.json()["ok"] is True
    assert shown(clients["bob"])[CHAT]["typing"] is True

    error(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/typing", {"state": "recording"},
                              format="json"), 400, "validation_error")
    error(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/typing", {}, format="json"), 400,
          "validation_error")
    viewer = make_user("vera@acme.test")
    Membership.objects.create(user=viewer, tenant=named.acme, role=Membership.Role.VIEWER)
    error(api_as(viewer).post(f"{V1}/conversations/{conversation.pk}/typing", {"state": "composing"},
                              format="json"), 403, "permission_denied")
    error(clients["carol"].post(f"{V1}/conversations/{conversation.pk}/typing", {"state": "composing"},
                                format="json"), 404, "not_found")
    error(clients["carol"].get(f"{V1}/test-helpers/sessions/front-desk/chat-presence"), 404, "not_found")

    with tenant_context(named.acme):
        WhatsAppSession.objects.update(status=WhatsAppSession.Status.DISCONNECTED)
    error(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/typing", {"state": "composing"},
                              format="json"), 409, "session_not_connected")
    refused = client.post(f"/conversations/{conversation.pk}/", {"action": "typing", "state": "composing"},
                          HTTP_ACCEPT="application/json")
    assert refused.status_code == 409 and refused.json()["code"] == "session_not_connected"


def test_a_session_no_host_runs_is_409(named, clients):
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123",
                                                 status=WhatsAppSession.Status.CONNECTED)
        conversation = Conversation.objects.create(session=session, chat_jid=CHAT)
    error(clients["bob"].post(f"{V1}/conversations/{conversation.pk}/typing", {"state": "composing"},
                              format="json"), 409, "session_not_running")


def test_the_contacts_typing_reaches_the_conversation_page_only_when_the_number_opts_in(
        named, clients, host, clock, client, private_layer):
    """show_contact_typing (off by default) marks the number online so WhatsApp sends the contacts' typing; the
    conversation's open pages hear "conversation.typing". Off, the simulated WhatsApp sends nothing, like the real one."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from audit.models import AuditLog
    from whatsapp.live import conversation_group
    from whatsapp.tests.support import drain

    provider = link_session(clients["alice"], host, clock)
    ok(clients["alice"].post(f"{V1}/test-helpers/sessions/front-desk/inbound", {"from": CONTACT, "text": "Hi"},
                             format="json"), 202)
    settle(host, clock)
    with tenant_context(named.acme):
        conversation = Conversation.objects.get()
    layer = get_channel_layer()
    page = f"typingtest{conversation.pk}"  # a plain channel: any layer instance (each wait's own loop) reads it
    async_to_sync(layer.group_add)(conversation_group(named.acme.schema_name, conversation.pk), page)

    def typing(state="composing"):
        ok(clients["alice"].post(f"{V1}/test-helpers/sessions/front-desk/contact-typing",
                                 {"from": CONTACT, "state": state}, format="json"), 202)
        drain(host)

    def heard():
        return heard_within(page, 5.0)

    assert ok(clients["alice"].get(f"{V1}/sessions/front-desk"))["show_contact_typing"] is False
    typing()
    assert provider.available is False
    assert heard_within(page, 1.0) is None

    answer = ok(clients["alice"].patch(f"{V1}/sessions/front-desk", {"show_contact_typing": True}, format="json"))
    assert answer["show_contact_typing"] is True and provider.available is True
    typing()
    assert heard() == {"type": "conversation.typing",
                       "data": {"conversation_id": conversation.pk, "state": "composing"}}
    typing("paused")
    assert heard()["data"]["state"] == "paused"

    # A member may not change it; bad input is 400; another tenant's number is 404; the page switches it off.
    error(clients["bob"].patch(f"{V1}/sessions/front-desk", {"show_contact_typing": False}, format="json"), 403,
          "permission_denied")
    error(clients["alice"].patch(f"{V1}/sessions/front-desk", {"show_contact_typing": "maybe"}, format="json"), 400,
          "validation_error")
    error(clients["carol"].patch(f"{V1}/sessions/front-desk", {"show_contact_typing": True}, format="json"), 404,
          "not_found")
    client.force_login(named.alice)
    assert client.post("/sessions/front-desk/", {"action": "contact_typing"}).status_code == 302
    drain(host)
    assert provider.available is False
    with tenant_context(named.acme):
        assert [row.after for row in AuditLog.objects.filter(action="whatsapp.session_contact_typing_changed")
                .order_by("id")] == [{"show_contact_typing": True}, {"show_contact_typing": False}]


def heard_within(channel, seconds):
    """The next typing news on `channel` within `seconds`, or None (other news, e.g. message updates, skipped)."""
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)

    async def wait():
        while True:
            message = await layer.receive(channel)
            if message["type"] == "conversation.typing":
                return message

    try:
        return async_to_sync(asyncio.wait_for)(wait(), seconds)
    except asyncio.TimeoutError:
        return None
