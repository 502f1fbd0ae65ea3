"""What each message type needs: parse() turns an API request into Message field values (or a 400), and
outgoing() turns a stored Message into what the provider sends."""
from config.api import ApiError

from .models import Message
from .providers.base import OutgoingMessage

SUPPORTED_TYPES = {"text"}
MAX_TEXT_LENGTH = 4096
# The request fields that make two requests "the same" for Idempotency-Key.
REQUEST_FIELDS = ("session", "to", "type", "text")


def parse(body, files=None):
    """Field values for a Message of body["type"] (default text), validated. 400 with a code otherwise."""
    kind = body.get("type") or "text"
    if kind not in SUPPORTED_TYPES:
        raise ApiError(400, "unsupported_type", f"Message type '{kind}' is not supported yet: only text can be "
                       "sent for now.", {"supported": sorted(SUPPORTED_TYPES)})
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "missing_text", "A text message needs a non-empty 'text'.")
    if len(text) > MAX_TEXT_LENGTH:
        raise ApiError(400, "text_too_long", f"A text message holds at most {MAX_TEXT_LENGTH} characters.")
    return {"type": Message.Type.TEXT, "text": text}


def outgoing(message):
    """The provider's view of a stored outgoing message."""
    return OutgoingMessage(type=message.type, text=message.text)
