"""What each message type needs: parse() turns an API request into Message field values (or a 4xx), and
outgoing() turns a stored Message into what the provider sends.

Types: text, image, document, audio, video (media by `media_url` or an uploaded `file`), location, contact,
reaction. Any type but reaction may quote another message with `reply_to`; a reaction names the message it
reacts to in `reply_to`. Media is fetched and checked here, before the row exists, and its file is written
together with its row (whatsapp.messaging.media.kept_with_row).
"""
import json
import re

from core.errors import DomainError
from whatsapp.providers.base import OutgoingMessage, ProviderError

from . import media, recipients
from .errors import MessagingError
from .models import Message

T = Message.Type
SUPPORTED_TYPES = (T.TEXT, T.IMAGE, T.DOCUMENT, T.AUDIO, T.VIDEO, T.LOCATION, T.CONTACT, T.REACTION)
MEDIA_TYPES = (T.IMAGE, T.DOCUMENT, T.AUDIO, T.VIDEO)
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024  # WhatsApp's limit for media captions
MAX_LOCATION_NAME = 255
MAX_CONTACT_NAME = 120
MAX_REACTION_CHARS = 10  # one emoji may be several code points (skin tone, ZWJ sequences, flags)
WHATSAPP_ID_RE = re.compile(r"^[A-Za-z0-9_-]{4,128}$")
# The request fields that make two requests "the same" for Idempotency-Key. "file" holds the uploaded file's
# sha256 (set by the API view), so the same key with another file is a conflict.
REQUEST_FIELDS = ("session", "to", "type", "text", "media_url", "file", "caption", "filename", "latitude",
                  "longitude", "contact", "reply_to", "reaction")


def _a(kind):
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _text(body, field):
    value = body.get(field)
    return value if isinstance(value, str) else ("" if value is None else str(value))


def parse(body, files=None):
    """Field values for a Message of body["type"] (default text), validated; 4xx with a code otherwise. Media
    is fetched (media_url) or read (files["file"]) only after every cheaper check passed."""
    kind = body.get("type") or T.TEXT
    if kind not in SUPPORTED_TYPES:
        raise DomainError(MessagingError.UNSUPPORTED_TYPE, f"Message type '{kind}' is not supported.",
                          {"supported": list(SUPPORTED_TYPES)})
    upload = (files or {}).get("file")
    if kind not in MEDIA_TYPES and (upload is not None or body.get("media_url")):
        raise DomainError(MessagingError.UNEXPECTED_MEDIA,
                          f"{_a(kind).capitalize()} message carries no media; drop media_url/file.")
    if kind not in MEDIA_TYPES and body.get("caption"):
        raise DomainError(MessagingError.UNEXPECTED_CAPTION, f"{_a(kind).capitalize()} message has no caption.")
    fields = {"type": kind}
    if kind == T.TEXT:
        text = _text(body, "text")
        if not text.strip():
            raise DomainError(MessagingError.MISSING_TEXT, "A text message needs a non-empty 'text'.")
        if len(text) > MAX_TEXT_LENGTH:
            raise DomainError(MessagingError.TEXT_TOO_LONG,
                              f"A text message holds at most {MAX_TEXT_LENGTH} characters.")
        fields["text"] = text
    elif kind == T.LOCATION:
        fields.update(_location(body))
    elif kind == T.CONTACT:
        fields["contact_card"] = _contact(body.get("contact"))
    elif kind == T.REACTION:
        fields["reaction"] = _reaction(body.get("reaction"))
        if body.get("reply_to") in (None, ""):
            raise DomainError(MessagingError.MISSING_REPLY_TO, "A reaction needs 'reply_to': the message it reacts to.")
    else:
        caption = _text(body, "caption")
        if caption and kind == T.AUDIO:
            raise DomainError(MessagingError.UNEXPECTED_CAPTION, "WhatsApp shows no caption on audio.")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise DomainError(MessagingError.CAPTION_TOO_LONG,
                              f"A caption holds at most {MAX_CAPTION_LENGTH} characters.")
        fields["caption"] = caption
    if body.get("reply_to") not in (None, ""):
        fields["reply_to"] = _reply_to(body.get("reply_to"), body.get("session"))
    if kind in MEDIA_TYPES:
        # Cheap checks first: a bad recipient should not cost a download (messaging checks it again).
        recipients.normalize_recipient(body.get("to"))
        fields.update(_media(kind, body, upload))
    return fields


def _location(body):
    try:
        latitude, longitude = float(body.get("latitude")), float(body.get("longitude"))
    except (TypeError, ValueError):
        raise DomainError(MessagingError.INVALID_LOCATION,
                          "A location needs numeric 'latitude' and 'longitude'.") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise DomainError(MessagingError.INVALID_LOCATION,
                          "Latitude is between -90 and 90, longitude between -180 and 180.",
                          {"latitude": latitude, "longitude": longitude})
    name = _text(body, "text").strip()
    if len(name) > MAX_LOCATION_NAME:
        raise DomainError(MessagingError.INVALID_LOCATION,
                          f"A location's name ('text') holds at most {MAX_LOCATION_NAME} "
                          "characters.")
    return {"latitude": latitude, "longitude": longitude, "location_name": name}


def _contact(value):
    """{"name", "phone", "vcard"} from {"name", "phone"}, a vCard string, or that object as a JSON string."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            raise DomainError(MessagingError.INVALID_CONTACT, "'contact' is not valid JSON.") from None
    if isinstance(value, str) and value.strip():
        vcard = value.strip().replace("\r\n", "\n")
        if not (vcard.upper().startswith("BEGIN:VCARD") and vcard.upper().rstrip().endswith("END:VCARD")):
            raise DomainError(MessagingError.INVALID_CONTACT, "A contact is {\"name\", \"phone\"} or a vCard "
                              "(BEGIN:VCARD … END:VCARD).")
        name = re.search(r"^FN[^:\n]*:(.*)$", vcard, re.MULTILINE | re.IGNORECASE)
        phone = re.search(r"^TEL[^:\n]*:(.*)$", vcard, re.MULTILINE | re.IGNORECASE)
        if not name or not name.group(1).strip():
            raise DomainError(MessagingError.INVALID_CONTACT, "The vCard needs a name (an FN line).")
        if len(vcard) > 10000:
            raise DomainError(MessagingError.INVALID_CONTACT, "The vCard is too long (10,000 characters at most).")
        return {"name": name.group(1).strip(), "phone": phone.group(1).strip() if phone else "",
                "vcard": vcard.replace("\n", "\r\n")}
    if not isinstance(value, dict):
        raise DomainError(MessagingError.INVALID_CONTACT,
                          "A contact message needs 'contact': {\"name\", \"phone\"} or a vCard.")
    name = str(value.get("name") or "").strip()
    if not name or len(name) > MAX_CONTACT_NAME or any(ch in name for ch in "\r\n;"):
        raise DomainError(MessagingError.INVALID_CONTACT,
                          f"The contact needs a 'name' of 1–{MAX_CONTACT_NAME} characters "
                          "on one line, without ';'.")
    try:
        phone, _ = recipients.normalize_recipient(value.get("phone"))
    except DomainError as exc:
        raise DomainError(MessagingError.INVALID_CONTACT, f"The contact's phone: {exc.message}") from None
    if not phone:
        raise DomainError(MessagingError.INVALID_CONTACT, "The contact's phone must be a phone number.")
    vcard = "\r\n".join(["BEGIN:VCARD", "VERSION:3.0", f"FN:{name}", f"N:;{name};;;",
                         f"TEL;type=CELL;type=VOICE;waid={phone[1:]}:{phone}", "END:VCARD"])
    return {"name": name, "phone": phone, "vcard": vcard}


def _reaction(value):
    if value is None:
        raise DomainError(MessagingError.MISSING_REACTION,
                          "A reaction needs 'reaction': an emoji, or \"\" to remove one.")
    if not isinstance(value, str) or len(value) > MAX_REACTION_CHARS or (
            value and (any(ch.isascii() and ch.isalnum() for ch in value) or any(ch.isspace() for ch in value))):
        raise DomainError(MessagingError.INVALID_REACTION, "'reaction' is one emoji, or \"\" to remove your reaction.")
    return value


def _reply_to(value, session_name):
    """The WhatsApp id of the quoted message: one of ours (its id, an integer) or a WhatsApp id as given."""
    if isinstance(value, bool):
        raise DomainError(MessagingError.INVALID_REPLY_TO, "'reply_to' is a message id or a WhatsApp message id.")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        quoted = (Message.objects.filter(pk=int(value), session__name=str(session_name or ""))
                  .exclude(provider_message_id="").values_list("provider_message_id", flat=True).first())
        if quoted is None:
            raise DomainError(MessagingError.UNKNOWN_REPLY_TO,
                              f"No message {value} of this session that WhatsApp has (sent "
                              "or received) to reply or react to.", {"reply_to": value})
        return quoted
    if isinstance(value, str) and WHATSAPP_ID_RE.match(value.strip()):
        return value.strip()
    raise DomainError(MessagingError.INVALID_REPLY_TO, "'reply_to' is one of our message ids or a WhatsApp message id.")


def _media(kind, body, upload):
    url = _text(body, "media_url").strip()
    if url and upload is not None:
        raise DomainError(MessagingError.MEDIA_URL_AND_FILE,
                          "Send the media either as 'media_url' or as a 'file', not both.")
    if not url and upload is None:
        raise DomainError(MessagingError.MISSING_MEDIA,
                          f"{_a(kind).capitalize()} message needs 'media_url' or a multipart 'file'.")
    if url:
        if len(url) > 2000:
            raise DomainError(MessagingError.INVALID_MEDIA_URL, "The media URL is longer than 2000 characters.")
        content, fetched_name = media.fetch(url, kind)
    else:
        if upload.size is not None and upload.size > media.max_bytes(kind):
            raise media.too_large(kind, upload.size)
        content, fetched_name = upload.read(), media.clean_filename(upload.name)
    filename = media.clean_filename(_text(body, "filename")) or fetched_name
    mimetype, extension = media.check(kind, content, filename)
    if kind == T.DOCUMENT and not filename:
        filename = f"document.{extension}"
    return {"media_url": url, "media_file": media.pending(content, extension), "media_mimetype": mimetype,
            "media_size": len(content), "media_filename": filename}


# --- received messages ----------------------------------------------------------------------------------------------


INBOUND_TYPES = {t.value for t in T}


def inbound_fields(data):
    """Message field values of a MESSAGE event (whatever the provider could tell). Media bytes go to the tenant's
    storage when they fit the size limit; otherwise media_error says why and the message is kept without them."""
    kind = data.get("type") if data.get("type") in INBOUND_TYPES else T.OTHER
    text = str(data.get("text") or "")
    fields = {"type": kind, "reply_to": str(data.get("quoted_id") or "")[:128]}
    if kind in (T.TEXT, T.OTHER):
        fields["text"] = text
    elif kind == T.LOCATION:
        fields.update(latitude=_float_or_none(data.get("latitude")), longitude=_float_or_none(data.get("longitude")),
                      location_name=text[:MAX_LOCATION_NAME])
        if fields["latitude"] is None or fields["longitude"] is None:
            fields["latitude"] = fields["longitude"] = None
    elif kind == T.CONTACT:
        vcard = str(data.get("vcard") or "")
        phone = re.search(r"^TEL[^:\n]*:(.*)$", vcard.replace("\r\n", "\n"), re.MULTILINE | re.IGNORECASE)
        fields["contact_card"] = {"name": text, "phone": phone.group(1).strip() if phone else "", "vcard": vcard}
    elif kind == T.REACTION:
        fields.update(reaction=str(data.get("reaction") or "")[:32],
                      reply_to=str(data.get("reaction_to") or "")[:128])
    else:  # image, document, audio, video, sticker
        fields.update(_inbound_media(kind, data))
    return fields


def _float_or_none(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _inbound_media(kind, data):
    fields = {"caption": str(data.get("caption") or ""),
              "media_mimetype": str(data.get("mimetype") or "")[:120],
              "media_filename": media.clean_filename(data.get("filename") or "")}
    content = data.get("media")
    if data.get("media_error") or content is None:
        fields["media_error"] = str(data.get("media_error") or "no_media: WhatsApp gave no media to download")[:500]
        return fields
    limit = media.max_bytes(kind)
    fields["media_size"] = len(content)
    if len(content) > limit:
        fields["media_error"] = f"media_too_large: {len(content)} bytes, over the {limit}-byte limit for {kind}"
        return fields
    detected = media.detect(content) if content else ""
    mimetype = fields["media_mimetype"] or detected
    fields["media_mimetype"] = mimetype
    extension = media.EXTENSIONS.get(detected) or media.EXTENSIONS.get(mimetype.split(";")[0].strip()) or "bin"
    fields["media_file"] = media.pending(content, extension)
    return fields


# --- to the provider ----------------------------------------------------------------------------------------------


def outgoing(message):
    """The provider's view of a stored outgoing message (media bytes read from the tenant's storage)."""
    content = None
    if message.type in MEDIA_TYPES:
        try:
            content = media.read(message.media_file) if message.media_file else None
        except (OSError, ValueError):
            content = None
        if not content:
            raise ProviderError("media_missing", "the stored media file of this message is missing")
    target = message.reply_to
    quoted = None
    if target:
        quoted = (Message.objects.filter(session_id=message.session_id, provider_message_id=target)
                  .exclude(pk=message.pk).only("direction", "sender_jid", "text", "caption").first())
    is_reaction = message.type == T.REACTION
    card = message.contact_card or {}
    return OutgoingMessage(
        type=message.type, text=message.text or message.location_name, media=content,
        mimetype=message.media_mimetype, filename=message.media_filename, caption=message.caption,
        latitude=message.latitude, longitude=message.longitude, contact_vcard=card.get("vcard", ""),
        reply_to="" if is_reaction else target, reaction=message.reaction if is_reaction else "",
        reaction_to=target if is_reaction else "",
        quoted_from_me=bool(quoted and quoted.direction == Message.Direction.OUT),
        quoted_sender=(quoted.sender_jid if quoted and quoted.direction == Message.Direction.IN else ""),
        quoted_text=(quoted.text or quoted.caption) if quoted else "",
    )

