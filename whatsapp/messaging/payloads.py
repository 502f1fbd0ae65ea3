"""A message as the API, the webhooks and the live pages show it."""
import logging

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, transaction
from django.db.models import prefetch_related_objects

from whatsapp import live

from .models import Message

log = logging.getLogger(__name__)


def _iso(value):
    return value.isoformat() if value else None


def message_payload(message, session_name=None):
    """The API representation, also the `data` of the message.* webhook events."""
    return {
        "id": message.pk,
        "session": session_name or message.session.name,
        "direction": message.direction,
        "to": message.to_phone or (message.chat_jid if message.direction == Message.Direction.OUT else ""),
        "from": message.from_phone or (message.sender_jid if message.direction == Message.Direction.IN else ""),
        "chat": message.chat_jid,
        "sender_unresolved": message.sender_unresolved,
        "type": message.type,
        "text": message.text,
        "caption": message.caption,
        "media": _media_payload(message),
        "location": ({"latitude": message.latitude, "longitude": message.longitude, "name": message.location_name}
                     if message.latitude is not None else None),
        "contact_card": message.contact_card,
        "reply_to": message.reply_to or None,
        "reaction": message.reaction or None,
        "conversation_id": message.conversation_id,
        "contact_id": message.contact_id,
        "status": message.status,
        "failure_reason": message.failure_reason,
        "paced_until": _iso(message.paced_until),
        "paced_reason": message.paced_reason or None,
        "provider_message_id": message.provider_message_id or None,
        "attempts": message.attempts,
        "created_at": _iso(message.created_at),
        "sent_at": _iso(message.sent_at),
        "delivered_at": _iso(message.delivered_at),
        "read_at": _iso(message.read_at),
        "automation": automation_payload(message),
    }


def automation_payload(message):
    """Which rule or bot sent this message (whatsapp.automation's log row, through the reverse one-to-one
    `automation`), or None for a message no automation sent. Load it with select_related("automation") when
    showing many messages. `label`: the words the conversation page shows."""
    if message.direction != Message.Direction.OUT or message.pk is None:
        return None
    try:
        row = message.automation
    except ObjectDoesNotExist:
        return None
    source = row.source or row.get_kind_display()
    label = f"rule \u2018{source}\u2019" if row.kind == "rule" else source
    return {"kind": row.kind, "source": source, "label": f"Automatic \u00b7 {label}"}


def _media_payload(message):
    if not (message.media_file or message.media_url or message.media_error):
        return None
    return {"url": message.media_url or None, "mimetype": message.media_mimetype, "size": message.media_size,
            "filename": message.media_filename, "stored": bool(message.media_file),
            "error": message.media_error or None}


def messages_changed(messages, *, conversations=None, payloads=None):
    """Tell open conversation pages about new or changed messages, once the transaction commits.
    `conversations`: {id: Conversation (contact and group loaded)} whose list row moves with these messages
    (its summary goes along); for the others the list page only learns which row changed. `payloads`: the
    messages' message_payload, when the caller built them already (for webhooks)."""
    updates = {}
    if payloads is None:
        prefetch_related_objects([m for m in messages if m.conversation_id and m.pk], "automation")
    for index, message in enumerate(messages):
        if not message.conversation_id:
            continue
        try:
            data = dict(payloads[index]) if payloads is not None else message_payload(message)
            conversation = (conversations or {}).get(message.conversation_id)
            data["conversation"] = (live.conversation_summary(conversation, data["session"]) if conversation is not None
                                    else {"id": message.conversation_id})
        except Exception:  # a live page missing an update must never fail a send or a receipt
            log.warning("live payload for message %s failed", message.pk, exc_info=True)
            continue
        updates.setdefault(message.conversation_id, []).append(data)
    if updates:
        schema_name = connection.schema_name
        transaction.on_commit(lambda: live.publish(schema_name, updates))
