"""A message as the API, the webhooks and the live pages show it."""
from .models import Message


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
    }


def _media_payload(message):
    if not (message.media_file or message.media_url or message.media_error):
        return None
    return {"url": message.media_url or None, "mimetype": message.media_mimetype, "size": message.media_size,
            "filename": message.media_filename, "stored": bool(message.media_file),
            "error": message.media_error or None}
