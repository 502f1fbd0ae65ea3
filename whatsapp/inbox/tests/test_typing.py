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
