"""Live updates of messages and conversations for open pages (Channels groups carrying the schema).

message_changed runs inside the transaction that changed the message (whatsapp.messaging) and sends once it
commits, so a page never shows a state that was rolled back; a just-queued message's update is sent by its send
task instead (deferred_updates), after the commit too, off the web request. The payload is built from the objects
already in memory (no query on the hot path); when nobody listens the cost is the channel layer's group lookup.

Messages (see whatsapp.conversation_consumers):
  {"type": "message.update", "data": message_payload + {"conversation": conversation summary}}
    to t.<schema>.conversation.<id> (the conversation page) and t.<schema>.conversations (the list page).
  {"type": "contacts.synced", "data": {session_id, ok, contacts, contacts_created, groups, … | error}}
    to t.<schema>.conversations (whatsapp.conversations.sync_on_host).
"""
import asyncio
import contextlib
import contextvars
import logging
import os
import threading

from channels.layers import get_channel_layer
from django.db import connection, transaction

log = logging.getLogger(__name__)

# Inside deferred_updates(): message_changed collects its update here instead of publishing it on commit.
_deferred = contextvars.ContextVar("live_deferred_updates", default=None)


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
    }


def message_changed(message):
    """Tell open conversation pages about a new or changed message, once the transaction commits."""
    from . import conversations
    from .messaging import message_payload
    from .models import Message

    if not message.conversation_id:
        return
    if message.direction == Message.Direction.OUT and message.status == Message.Status.QUEUED:
        conversations.note_outgoing(message)  # a write in the caller's transaction: its errors are the caller's
    try:
        data = message_payload(message)
        conversation = message.conversation if Message.conversation.is_cached(message) else None
        if conversation is not None:
            data["conversation"] = conversation_summary(conversation, data["session"])
        else:  # a status change: the list page only needs to know which row
            data["conversation"] = {"id": message.conversation_id}
    except Exception:  # a live page missing an update must never fail a send or a receipt
        log.warning("live payload for message %s failed", message.pk, exc_info=True)
        return
    schema_name, conversation_id = connection.schema_name, message.conversation_id
    update = [schema_name, conversation_id, {"type": "message.update", "data": data}]
    deferred = _deferred.get()
    if deferred is not None:
        deferred.append(update)
        return
    transaction.on_commit(lambda: publish(*update))


@contextlib.contextmanager
def deferred_updates():
    """Within the block, message_changed does its writes but hands its updates (JSON-safe lists of publish()'s
    arguments) to the caller, who publishes them later from elsewhere: the web request accepting a message
    passes them to its send task, so the request does not pay the channel layer's round trips."""
    updates = []
    token = _deferred.set(updates)
    try:
        yield updates
    finally:
        _deferred.reset(token)


def publish_all(updates):
    for update in updates or ():
        publish(*update)


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


def publish(schema_name, conversation_id, message):
    """Send `message` to the conversation's page and the list page; waits for the channel layer (so updates of
    one message go out in order) but never raises."""
    layer = get_channel_layer()
    if layer is None:
        return

    async def send():
        await layer.group_send(conversation_group(schema_name, conversation_id), message)
        await layer.group_send(conversations_group(schema_name), message)

    try:
        asyncio.run_coroutine_threadsafe(send(), _publisher_loop()).result(timeout=PUBLISH_TIMEOUT)
    except Exception:  # live pages catch up on reconnect; the database already has the truth
        log.warning("live update for conversation %s:%s failed", schema_name, conversation_id, exc_info=True)
