"""GDPR erasure of a contact: DELETE /api/v1/contacts/{id}?erase=true and the conversations page's Erase button remove
the contact, the messages of its chats (and the ones it sent in groups) with their media files, its conversations and
their notes, the webhook deliveries and automation log of those messages, and the per-chat analytics rows; the audit
row holds counts only. Without erase, the contact alone goes (test_directory_api)."""
import json
import os

import pytest
from django_tenants.utils import tenant_context

from analytics import rollups
from analytics.models import ChatMonthly, HourlyRollup
from audit.models import AuditLog
from whatsapp.automation.models import AutomationLog
from whatsapp.inbox.models import ConversationNote
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import media
from whatsapp.models import Contact, Conversation, Message, WhatsAppSession
from whatsapp.webhooks.models import WebhookDelivery, WebhookEndpoint

PEER, PEER_JID = "+6281234567890", "6281234567890@s.whatsapp.net"
OTHER, OTHER_JID = "+6289999999999", "6289999999999@s.whatsapp.net"
GROUP = "120363025246125486@g.us"
JPEG = b"\xff\xd8\xff\xe0 a photo of a passport"


def _inbound(session, sender_jid, phone, *, chat=None, **extra):
    data = {"id": f"IN{Message.objects.count() + 1}", "chat": chat or sender_jid, "sender": sender_jid,
            "sender_phone": phone, "from_me": False, "type": "text", "text": "my address is 1 Main St", **extra}
    return messaging.store_inbound(session, data)


@pytest.fixture
def world(named, settings, tmp_path):
    """In Acme: PEER wrote a text and a photo, sent a message in a group, got a note and an automation log line;
    OTHER wrote too. A webhook delivery of PEER's message is stored; analytics folded."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123",
                                                 status=WhatsAppSession.Status.CONNECTED)
        text = _inbound(session, PEER_JID, PEER)
        photo = _inbound(session, PEER_JID, PEER, type="image", text="", caption="passport", media=JPEG,
                         mimetype="image/jpeg")
        in_group = _inbound(session, PEER_JID, PEER, chat=GROUP, text="hello group")
        other = _inbound(session, OTHER_JID, OTHER, text="keep me")
        contact = Contact.objects.get(jid=PEER_JID)
        conversation = Conversation.objects.get(chat_jid=PEER_JID)
        ConversationNote.objects.create(conversation=conversation, author=named.alice, text="VIP, call back")
        AutomationLog.objects.create(session=session, chat_jid=PEER_JID, conversation=conversation, contact=contact,
                                     inbound=text, kind=AutomationLog.Kind.RULE, detail="answered the hours")
        endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/x", events=["message.received"],
                                                  secret_encrypted="x")
        for message in (text, other):
            WebhookDelivery.objects.create(endpoint=endpoint, event_type="message.received",
                                           webhook_id=f"msg_{message.pk}",
                                           payload={"type": "message.received", "data": {"id": message.pk,
                                                                                         "text": message.text}})
        rollups.fold()
        assert ChatMonthly.objects.filter(chat_jid=PEER_JID).exists()
        photo_path = media.absolute_path(Message.objects.get(pk=photo.pk).media_file)
        assert os.path.exists(photo_path)
    return {"contact": contact, "conversation": conversation, "photo_path": photo_path, "other": other,
            "messages": [text.pk, photo.pk, in_group.pk]}


def test_erase_removes_the_contact_its_messages_media_conversation_and_notes(
        named, api_as, world, django_capture_on_commit_callbacks):
    with tenant_context(named.acme):
        counted_before = sum(HourlyRollup.objects.values_list("count", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(named.alice).delete(f"/api/v1/contacts/{world['contact'].pk}?erase=true")
    assert response.status_code == 204, response.content
    with tenant_context(named.acme):
        assert not Contact.objects.filter(jid=PEER_JID).exists()
        assert not Message.objects.filter(pk__in=world["messages"]).exists()
        assert not Conversation.objects.filter(pk=world["conversation"].pk).exists()
        assert not ConversationNote.objects.exists() and not AutomationLog.objects.exists()
        assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == [f"msg_{world['other'].pk}"]
        assert not ChatMonthly.objects.filter(chat_jid=PEER_JID).exists()
        # Someone else's messages, contact and analytics stay; the hourly numbers follow the messages that went.
        assert Message.objects.filter(pk=world["other"].pk).exists() and Contact.objects.filter(jid=OTHER_JID).exists()
        assert ChatMonthly.objects.filter(chat_jid=OTHER_JID).exists()
        rollups.fold()
        assert sum(HourlyRollup.objects.values_list("count", flat=True)) == counted_before - 3
    assert not os.path.exists(world["photo_path"])
    row = AuditLog.objects.get(action="whatsapp.contact_erased")
    assert (row.actor, row.tenant, row.target_id) == (named.alice, named.acme, str(world["contact"].pk))
    assert row.after["messages"] == 3 and row.after["media_files"] == 1 and row.after["conversations"] == 1
    assert row.after["conversationnote"] == 1 and row.after["webhook_deliveries"] == 1
    written = json.dumps([row.before, row.after])
    for personal in ("6281234567890", "passport", "Main St", "VIP"):
        assert personal not in written


def test_erase_is_404_across_tenants_and_validates_its_flag(named, api_as, world):
    contact_id = world["contact"].pk
    response = api_as(named.carol).delete(f"/api/v1/contacts/{contact_id}?erase=true")
    with tenant_context(named.globex):
        taken = Contact.objects.filter(pk=contact_id).exists()
    if not taken:
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = api_as(named.alice).delete(f"/api/v1/contacts/{contact_id}?erase=maybe")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    with tenant_context(named.acme):
        assert Contact.objects.filter(pk=contact_id).exists()
        assert Message.objects.filter(pk__in=world["messages"]).count() == 3
    assert os.path.exists(world["photo_path"])
    assert not AuditLog.objects.filter(action="whatsapp.contact_erased").exists()


def test_without_erase_the_messages_stay(named, api_as, world):
    response = api_as(named.alice).delete(f"/api/v1/contacts/{world['contact'].pk}?erase=false")
    assert response.status_code == 204
    with tenant_context(named.acme):
        assert not Contact.objects.filter(jid=PEER_JID).exists()
        assert Message.objects.filter(pk__in=world["messages"]).count() == 3
    assert os.path.exists(world["photo_path"])


def test_the_page_erases_with_a_confirm(named, client, world, django_capture_on_commit_callbacks):
    client.force_login(named.bob)  # an agent manages contacts
    page = client.get("/conversations/")
    erase_button = f'data-testid="erase-contact-{world["contact"].pk}"'.encode()
    assert erase_button in page.content and b"This cannot be undone" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post("/conversations/", {"action": "erase_contact", "contact": world["contact"].pk},
                           HTTP_ACCEPT="application/json")
    assert done.status_code == 200 and done.json()["ok"] is True
    with tenant_context(named.acme):
        assert not Message.objects.filter(pk__in=world["messages"]).exists()
    assert not os.path.exists(world["photo_path"])
    assert AuditLog.objects.get(action="whatsapp.contact_erased").actor == named.bob


def test_erase_contact_returns_what_it_removed(named, world):
    from whatsapp.conversations.erasure import erase_contact

    with tenant_context(named.acme):
        counts = erase_contact(world["contact"], acting_user=named.alice, tenant=named.acme)
        assert counts["contacts"] == 1 and counts["messages"] == 3
        assert Contact.objects.count() == 1 and Message.objects.count() == 1
