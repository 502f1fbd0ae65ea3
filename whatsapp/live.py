"""Live updates of messages and conversations for open pages (Channels groups carrying the schema).

whatsapp.messaging.payloads.messages_changed runs inside the transaction that changed the messages and sends once it
commits, so a page never shows a state that was rolled back. A batch of messages (the session host sends and records
them in batches) costs one group message per conversation and one for the list page, whatever its size. The payloads are built from the objects already in memory; when nobody listens the cost is
the channel layer's group lookup.

Group messages (see whatsapp.inbox.consumers, which hand each item to the browser as one
{"type": "message.update", "data": …}):
  {"type": "messages.update", "data": [message_payload + {"conversation": summary or {"id"}}, …]}
    to t.<schema>.conversation.<id> (that conversation's messages) and t.<schema>.conversations (all of them).
  {"type": "contacts.synced", "data": {session_id, ok, contacts, contacts_created, groups, … | error}}
    to t.<schema>.conversations (whatsapp.conversations.actions.sync_on_host).
"""
import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def conversation_group(schema_name, conversation_id):
    return f"t.{schema_name}.conversation.{conversation_id}"


def conversations_group(schema_name):
    return f"t.{schema_name}.conversations"


def _iso(value):
    return value.isoformat() if value else None


def contact_summary(contact):
    if contact is None:
        return None
    return {"id": contact.pk, "jid": contact.jid, "phone": contact.phone or None, "name": contact.name,
            "push_name": contact.push_name, "display_name": str(contact),
            "phone_hidden": not contact.phone}


def group_summary(group):
    if group is None:
        return None
    return {"id": group.pk, "jid": group.jid, "name": group.name or group.jid,
            "participants": len(group.participants or [])}


def conversation_summary(conversation, session_name=None):
    """What the list page shows for one conversation (also the API's Conversation)."""
    contact = conversation.contact if conversation.contact_id else None
    group = conversation.group if conversation.group_id else None
    return {
        "id": conversation.pk,
        "session": session_name or conversation.session.name,
        "session_id": conversation.session_id,
        "chat": conversation.chat_jid,
        "kind": "group" if group is not None or conversation.chat_jid.endswith("@g.us") else "contact",
        "title": str(conversation),
        "contact": contact_summary(contact),
        "group": group_summary(group),
        "last_message_at": _iso(conversation.last_message_at),
        "last_message_preview": conversation.last_message_preview,
        "unread_count": conversation.unread_count,
        "status": conversation.status,
        "assignee_id": conversation.assignee_id,
        "assigned_at": _iso(conversation.assigned_at),
    }


PUBLISH_TIMEOUT = 5.0  # seconds; a stuck Redis costs a live update, never a send
_loop, _loop_pid, _loop_lock = None, None, threading.Lock()


def _publisher_loop():
    """This process's event loop for publishing, on a daemon thread of its own, started on first use (again
    after a fork). async_to_sync ran every publish on a new loop, and the channel layer (one Redis connection
    pool per loop) connected to Redis anew each time: ~2 ms of CPU per update, three updates per message."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="live-publisher", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def publish(schema_name, updates):
    """Send {conversation id: [message data]} to each conversation's page and, all together, to the list page;
    waits for the channel layer (so successive batches go out in order) but never raises."""
    layer = get_channel_layer()
    if layer is None:
        return

    async def send():
        every = []
        for conversation_id, items in updates.items():
            await layer.group_send(conversation_group(schema_name, conversation_id),
                                   {"type": "messages.update", "data": items})
            every.extend(items)
        await layer.group_send(conversations_group(schema_name), {"type": "messages.update", "data": every})

    try:
        asyncio.run_coroutine_threadsafe(send(), _publisher_loop()).result(timeout=PUBLISH_TIMEOUT)
    except Exception:  # live pages catch up on reconnect; the database already has the truth
        log.warning("live update for %s conversations of %s failed", len(updates), schema_name, exc_info=True)
