"""The conversations of a batch of messages written out with core.rows (whatsapp.conversations.actions.of_messages,
on every batch the session host sends): each conversation, its contact and its group exactly as the ORM reads
them, every concrete field."""
import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from core.tests.instances import assert_same_instance
from whatsapp.conversations import actions as conversations
from whatsapp.models import Contact, Conversation, Group, Message, WhatsAppSession

pytestmark = pytest.mark.django_db

PEER, PEER_JID, GROUP_JID = "+6281234567890", "6281234567890@s.whatsapp.net", "120363025246125486@g.us"


def test_of_messages_gives_each_conversation_with_its_contact_and_group_as_the_orm_reads_them(named):
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123", status="connected")
        contact = Contact.objects.create(session=session, jid=PEER_JID, phone=PEER, push_name="Budi")
        group = Group.objects.create(session=session, jid=GROUP_JID, name="Team", synced_at=timezone.now(),
                                     participants=[{"jid": PEER_JID, "phone": PEER, "is_admin": False}])
        chats = [Conversation.objects.create(session=session, chat_jid=PEER_JID, contact=contact, unread_count=1,
                                             last_message_at=timezone.now(), last_message_preview="hi"),
                 Conversation.objects.create(session=session, chat_jid=GROUP_JID, group=group),
                 Conversation.objects.create(session=session, chat_jid="6281234567891@s.whatsapp.net")]
        messages = [Message(session=session, direction="out", chat_jid=chat.chat_jid, conversation=chat)
                    for chat in chats for _ in range(2)] + [Message(session=session, direction="out", chat_jid="x")]
        found = conversations.of_messages(messages)
        expected = Conversation.objects.select_related("contact", "group").in_bulk([chat.pk for chat in chats])
    assert sorted(found) == sorted(expected) == sorted(chat.pk for chat in chats)
    for pk, conversation in found.items():
        assert_same_instance(conversation, expected[pk])
        assert_same_instance(conversation.contact, expected[pk].contact)
        assert_same_instance(conversation.group, expected[pk].group)
    assert found[chats[1].pk].group.participants == [{"jid": PEER_JID, "phone": PEER, "is_admin": False}]
    assert conversations.of_messages([]) == {}
