"""Messaging's part of a contact's erasure (whatsapp.conversations.erasure): the messages of its chats, the ones it
sent in groups, and their media files (removed once the erasure commits)."""
from django.db import transaction
from django.db.models import Q

from . import media
from .models import Message


def erase_messages(erasure):
    messages = Message.objects.filter(
        Q(contact_id=erasure.contact.pk) | Q(conversation_id__in=erasure.conversation_ids)
        | Q(session_id=erasure.session_id, chat_jid__in=erasure.jids)
        | Q(session_id=erasure.session_id, sender_jid__in=erasure.jids))
    rows = list(messages.values_list("pk", "media_file"))
    files = [path for _, path in rows if path]
    erasure.found["message_ids"] = [pk for pk, _ in rows]
    Message.objects.filter(pk__in=erasure.found["message_ids"]).delete()
    erasure.count("messages", len(rows))
    erasure.count("media_files", len(files))
    transaction.on_commit(lambda: [media.delete(path) for path in files])
