"""whatsapp.conversations.actions: contacts, groups and conversations upserted by outgoing and inbound messages, @lid
senders resolved where WhatsApp (or an earlier event) gives the number, unread counts, syncs and deletes.

Messages go through whatsapp.messaging.actions (queue_message, store_inbound) as in production, in Acme's schema.
"""
import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from audit.models import AuditLog
from core.errors import DomainError
from whatsapp.conversations import actions as conversations
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import drain as sending
from whatsapp.messaging.payloads import message_payload
from whatsapp.models import Contact, Conversation, Group, Message, WhatsAppSession
from whatsapp.tests.support import Accepting

PHONE = "+14155550123"
PEER = "+6281234567890"
PEER_JID = "6281234567890@s.whatsapp.net"
LID = "123456789012345@lid"
GROUP = "120363025246125486@g.us"


@pytest.fixture
def acme(named):
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone=PHONE,
                                                 status=WhatsAppSession.Status.CONNECTED)
        yield session


def inbound(session, *, sender=PEER_JID, chat=None, text="hi", sender_phone=PEER, **extra):
    data = {"id": f"IN{Message.objects.count() + 1}", "chat": chat or sender, "sender": sender,
            "sender_phone": sender_phone, "from_me": False, "type": "text", "text": text, **extra}
    return messaging.store_inbound(session, data)


def queue(named, to, text="Hello"):
    message, _ = messaging.queue_message(named.acme, body={"session": "front-desk", "to": to, "type": "text",
                                                           "text": text})
    return message


# --- outgoing -------------------------------------------------------------------------------------------------


def drained(named, acme):
    sending.drain(named.acme.schema_name, acme.pk, Accepting())


def test_an_outgoing_message_opens_a_conversation_with_a_contact(named, acme, monkeypatch):
    monkeypatch.setattr(sending, "wake", lambda *args, **kwargs: None)
    message = queue(named, PEER, "Hello there")
    contact = Contact.objects.get()
    assert (contact.jid, contact.phone, contact.source) == (PEER_JID, PEER, Contact.Source.OUTBOUND)
    conversation = Conversation.objects.get()
    assert (conversation.chat_jid, conversation.contact, conversation.group) == (PEER_JID, contact, None)
    assert (message.conversation, message.contact) == (conversation, contact)
    # It becomes the conversation's last message when the session host handles it.
    drained(named, acme)
    conversation.refresh_from_db()
    assert conversation.last_message_preview == "Hello there"
    assert conversation.last_message_at == message.created_at and conversation.unread_count == 0

    second = queue(named, "6281234567890", "Again")
    third = queue(named, PEER, "And again")
    assert Contact.objects.count() == 1 and Conversation.objects.count() == 1
    drained(named, acme)  # both in one batch: the newer is the last message
    conversation.refresh_from_db()
    assert conversation.last_message_preview == "And again" and conversation.last_message_at == third.created_at
    assert second.created_at < third.created_at


def test_an_outgoing_group_message_opens_a_group_conversation(named, acme, monkeypatch):
    monkeypatch.setattr(sending, "wake", lambda *args, **kwargs: None)
    message = queue(named, GROUP, "Team, hello")
    group = Group.objects.get()
    conversation = Conversation.objects.get()
    assert (group.jid, conversation.chat_jid, conversation.group, conversation.contact) == (GROUP, GROUP, group, None)
    assert message.contact is None and Contact.objects.count() == 0


def test_a_failed_send_rolls_the_directory_back_too(named, acme):
    WhatsAppSession.objects.filter(pk=acme.pk).update(status=WhatsAppSession.Status.DISCONNECTED)
    with pytest.raises(DomainError):
        queue(named, PEER)
    assert Contact.objects.count() == Conversation.objects.count() == 0


# --- inbound --------------------------------------------------------------------------------------------------


def test_inbound_messages_create_the_contact_and_count_as_unread(acme):
    first = inbound(acme, text="Hi!", push_name="Budi")
    contact = Contact.objects.get()
    assert (contact.jid, contact.phone, contact.push_name, contact.source) == (PEER_JID, PEER, "Budi", "inbound")
    conversation = Conversation.objects.get()
    assert (conversation.contact, conversation.unread_count, conversation.last_message_preview) == (contact, 1, "Hi!")
    assert (first.conversation, first.contact, first.from_phone, first.sender_unresolved) == (
        conversation, contact, PEER, False)

    inbound(acme, text="Are you there?", push_name="Budi S.")
    conversation.refresh_from_db()
    contact.refresh_from_db()
    assert conversation.unread_count == 2 and conversation.last_message_preview == "Are you there?"
    assert contact.push_name == "Budi S." and Contact.objects.count() == 1

    conversations.mark_read(conversation)
    assert Conversation.objects.get().unread_count == 0


def test_an_older_message_does_not_replace_the_latest_preview(acme):
    inbound(acme, text="new")
    earlier = timezone.now() - timezone.timedelta(hours=1)
    messaging.store_inbound(acme, {"id": "OLD", "chat": PEER_JID, "sender": PEER_JID, "sender_phone": PEER,
                                   "type": "text", "text": "old"}, now=earlier)
    conversation = Conversation.objects.get()
    assert conversation.last_message_preview == "new" and conversation.unread_count == 2


def test_a_reply_and_an_outgoing_message_share_one_conversation(named, acme, monkeypatch):
    monkeypatch.setattr(sending, "wake", lambda *args, **kwargs: None)
    inbound(acme, text="Question?")
    queue(named, PEER, "Answer.")
    assert Conversation.objects.count() == 1 and Contact.objects.count() == 1
    assert Contact.objects.get().source == Contact.Source.INBOUND  # who came first is kept


def test_a_group_message_names_the_group_and_its_sender(acme):
    message = inbound(acme, chat=GROUP, text="In the group", push_name="Budi")
    group = Group.objects.get()
    conversation = Conversation.objects.get()
    assert (conversation.chat_jid, conversation.group, conversation.contact) == (GROUP, group, None)
    assert message.contact.jid == PEER_JID and message.conversation == conversation


# --- @lid senders ---------------------------------------------------------------------------------------------


def test_a_lid_sender_with_its_phone_is_keyed_by_the_phone_and_remembers_the_lid(acme):
    message = inbound(acme, sender=LID, chat=LID, sender_phone=PEER, sender_alt=PEER_JID)
    contact = Contact.objects.get()
    assert (contact.jid, contact.phone, contact.lid) == (PEER_JID, PEER, LID)
    assert Conversation.objects.get().chat_jid == PEER_JID
    assert message.from_phone == PEER and message.sender_unresolved is False


def test_a_phone_sender_with_a_lid_alt_remembers_the_lid(acme):
    inbound(acme, sender_alt=LID)
    assert Contact.objects.get().lid == LID


def test_a_known_lid_resolves_a_later_message_without_a_phone(acme):
    inbound(acme, sender=LID, chat=LID, sender_phone=PEER)
    later = inbound(acme, sender=LID, chat=LID, sender_phone=None, text="again")
    later.refresh_from_db()
    assert (later.from_phone, later.sender_unresolved) == (PEER, False)
    assert Contact.objects.count() == 1 and later.contact.jid == PEER_JID
    assert Conversation.objects.count() == 1 and Conversation.objects.get().unread_count == 2


def test_an_unknown_lid_stays_unresolved_until_its_number_is_learnt(acme):
    hidden = inbound(acme, sender=LID, chat=LID, sender_phone=None, push_name="Mystery")
    contact = Contact.objects.get()
    assert (contact.jid, contact.phone, contact.lid, contact.push_name) == (LID, "", LID, "Mystery")
    hidden.refresh_from_db()
    assert hidden.sender_unresolved is True and hidden.from_phone == ""
    assert message_payload(hidden)["sender_unresolved"] is True
    assert Conversation.objects.get().chat_jid == LID

    # WhatsApp gives the number with a later message: one contact, keyed by the phone, keeping the history.
    inbound(acme, sender=LID, chat=LID, sender_phone=PEER)
    contact = Contact.objects.get()
    assert (contact.jid, contact.phone, contact.lid, contact.push_name) == (PEER_JID, PEER, LID, "Mystery")
    hidden.refresh_from_db()
    assert hidden.contact == contact


# --- sync and delete ------------------------------------------------------------------------------------------


def test_apply_sync_upserts_contacts_and_groups_and_links_conversations(named, acme):
    inbound(acme, sender=LID, chat=LID, sender_phone=None)  # an unresolved contact the sync will resolve
    inbound(acme, chat=GROUP)
    contacts = [
        {"jid": PEER_JID, "phone": PEER, "name": "Budi Santoso", "push_name": "Budi", "lid": LID},
        {"jid": "14155550199@s.whatsapp.net", "phone": "+14155550199", "name": "Ann", "push_name": "", "lid": None},
        {"jid": "", "phone": None, "name": "nobody"},  # nothing to key it by: skipped
    ]
    groups = [{"jid": GROUP, "name": "Team", "topic": "Daily", "participants": [
        {"jid": PEER_JID, "phone": PEER, "is_admin": True}]}, {"jid": "not-a-group", "name": "x"}]
    counts = conversations.apply_sync(named.acme.schema_name, acme.pk, contacts, groups)
    assert counts == {"contacts": 2, "contacts_created": 1, "groups": 1, "groups_created": 0}
    budi = Contact.objects.get(jid=PEER_JID)
    assert (budi.name, budi.lid, budi.source) == ("Budi Santoso", LID, Contact.Source.INBOUND)
    assert not Contact.objects.filter(jid=LID).exists()
    assert Contact.objects.get(phone="+14155550199").source == Contact.Source.SYNC
    group = Group.objects.get()
    assert (group.name, group.topic, group.participants) == (
        "Team", "Daily", [{"jid": PEER_JID, "phone": PEER, "is_admin": True}])
    assert group.synced_at is not None

    # Again: nothing new, nothing duplicated.
    again = conversations.apply_sync(named.acme.schema_name, acme.pk, contacts, groups)
    assert again["contacts_created"] == 0 and Contact.objects.count() == 2 and Group.objects.count() == 1


def test_request_sync_needs_a_connected_session(acme):
    WhatsAppSession.objects.filter(pk=acme.pk).update(status=WhatsAppSession.Status.QR)
    acme.refresh_from_db()
    with pytest.raises(DomainError) as refused:
        conversations.request_sync(acme)
    assert (refused.value.status, refused.value.code) == (409, "session_not_connected")
    assert refused.value.details == {"status": "qr"}


def test_deleting_a_contact_keeps_its_messages_and_is_audited(named, acme):
    message = inbound(acme)
    contact = Contact.objects.get()
    conversations.delete_contact(contact, acting_user=named.alice, tenant=named.acme)
    assert not Contact.objects.exists()
    message.refresh_from_db()
    assert message.contact is None and message.conversation is not None
    assert AuditLog.objects.filter(action="whatsapp.contact_deleted", actor=named.alice).count() == 1
    inbound(acme)  # the next message brings the contact back
    assert Contact.objects.count() == 1


# --- the pages ------------------------------------------------------------------------------------------------


def test_the_pages_list_show_and_send_for_members(named, acme, client, monkeypatch):
    monkeypatch.setattr(sending, "wake", lambda *args, **kwargs: None)
    first = inbound(acme, text="Hello from Budi", push_name="Budi")
    conversation = first.conversation
    client.force_login(named.bob)
    listing = client.get("/conversations/")
    assert listing.status_code == 200 and b"Hello from Budi" in listing.content and b"Sync contacts" in listing.content
    page = client.get(f"/conversations/{conversation.pk}/")
    assert page.status_code == 200 and b"Hello from Budi" in page.content
    with tenant_context(named.acme):  # a request leaves the connection on the public schema
        assert Conversation.objects.get().unread_count == 1  # a GET changes nothing
    read = client.post(f"/conversations/{conversation.pk}/", {"action": "mark_read"}, HTTP_ACCEPT="application/json")
    assert read.status_code == 200 and read.json()["ok"] is True
    with tenant_context(named.acme):
        assert Conversation.objects.get().unread_count == 0  # the open page said it was seen

    sent = client.post(f"/conversations/{conversation.pk}/", {"action": "send", "text": "Hi Budi"},
                       HTTP_ACCEPT="application/json")
    assert sent.status_code == 202 and sent.json()["message_data"]["status"] == "queued"
    with tenant_context(named.acme):
        message = Message.objects.get(direction="out")
        assert (message.text, message.to_phone, message.conversation) == ("Hi Budi", PEER, conversation)

    empty = client.post(f"/conversations/{conversation.pk}/", {"action": "send", "text": "  "},
                        HTTP_ACCEPT="application/json")
    assert empty.status_code == 400 and empty.json()["code"] == "missing_text"
    with tenant_context(named.acme):
        WhatsAppSession.objects.filter(pk=acme.pk).update(status=WhatsAppSession.Status.DISCONNECTED)
    refused = client.post(f"/conversations/{conversation.pk}/", {"action": "send", "text": "again"},
                          HTTP_ACCEPT="application/json")
    assert refused.status_code == 409 and refused.json()["code"] == "session_not_connected"
    with tenant_context(named.acme):
        assert Message.objects.filter(direction="out").count() == 1


def test_viewers_do_not_delete_contacts_on_the_page(named, acme, client):
    from accounts.models import Membership
    from conftest import make_user

    inbound(acme)
    contact = Contact.objects.get()
    viewer = make_user("vera@acme.test")
    Membership.objects.create(user=viewer, tenant=named.acme, role=Membership.Role.VIEWER)
    client.force_login(viewer)
    denied = client.post("/conversations/", {"action": "delete_contact", "contact": contact.pk},
                         HTTP_ACCEPT="application/json")
    with tenant_context(named.acme):
        assert denied.status_code == 403 and Contact.objects.exists()
    client.force_login(named.bob)  # an agent
    done = client.post("/conversations/", {"action": "delete_contact", "contact": contact.pk},
                       HTTP_ACCEPT="application/json")
    with tenant_context(named.acme):
        assert done.status_code == 200 and done.json()["ok"] is True and not Contact.objects.exists()


def test_another_tenants_conversation_page_is_404(named, acme, client):
    conversation = inbound(acme).conversation
    client.force_login(named.carol)
    with tenant_context(named.globex):
        taken = Conversation.objects.filter(pk=conversation.pk).exists()
    if not taken:
        assert client.get(f"/conversations/{conversation.pk}/").status_code == 404
    assert client.post(f"/conversations/{conversation.pk + 1000}/", {"action": "send", "text": "x"},
                       HTTP_ACCEPT="application/json").status_code == 404
    listing = client.get("/conversations/")
    assert listing.status_code == 200 and b"front-desk" not in listing.content
