"""State changes of messages (whatsapp.models.Message) outside the session host's drain, in the tenant's schema.

The sending pipeline (ARCHITECTURE.md): queue_message commits a `queued` row and, on commit, wakes the session's
sender (whatsapp.sending: the host running the session claims, sends and records batches of due messages).
Receipts move sent messages to delivered and read, never backwards (apply_receipt; one that arrives before its
send is recorded is kept by the host and applied once it is). Inbound messages are stored by store_inbound. A
message whose wake was lost stays `queued` and sweep_queued drains its session again; after
WHATSAPP_MESSAGE_MAX_ATTEMPTS attempts it is `failed`, and one a dead host left `sending` is reported failed, not
resent. Every transition emits its webhook event and a live update (whatsapp.sending.tell).
"""
import hashlib
import json
from dataclasses import dataclass, field

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing import entitlements
from config.api import ApiError

from . import conversations, media, message_types, ratelimit, recipients, sending
from .models import Message, WhatsAppSession

S = Message.Status
RANK = {S.QUEUED: 0, S.SENT: 1, S.DELIVERED: 2, S.READ: 3}


# --- payloads -----------------------------------------------------------------------------------------------


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


# --- idempotency --------------------------------------------------------------------------------------------


def request_hash(body):
    canonical = json.dumps({k: body.get(k) for k in message_types.REQUEST_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(idempotency_key, digest):
    existing = Message.objects.filter(idempotency_key=idempotency_key).first()
    if existing is None:
        return None
    if existing.request_hash != digest:
        raise ApiError(409, "idempotency_conflict",
                       "This Idempotency-Key was already used with a different request body.",
                       {"message_id": existing.pk})
    return existing


# --- the pipeline -------------------------------------------------------------------------------------------


def queue_message(tenant, *, body, files=None, idempotency_key=None):
    """Validate `body` (the API's fields; `files` the uploaded media) and commit a queued message; returns
    (message, created). With an idempotency key used before: the same body returns that message (created False),
    another body is 409 idempotency_conflict. Nothing is written for a rejected request."""
    entitlements.require_write(tenant)
    digest = request_hash(body)
    if idempotency_key:
        existing = _replay(idempotency_key, digest)
        if existing is not None:
            return existing, False
    session = WhatsAppSession.objects.filter(name=str(body.get("session") or "")).first()
    if session is None:
        raise ApiError(404, "not_found", f"No session named '{body.get('session')}'.")
    fields = message_types.parse(body, files)
    phone, chat_jid = recipients.normalize_recipient(body.get("to"))
    if session.status != WhatsAppSession.Status.CONNECTED:
        raise ApiError(409, "session_not_connected",
                       f"The session '{session.name}' is not connected; start it and link a phone first.",
                       {"status": session.status})
    ratelimit.check_send_rate(tenant)
    try:
        with media.kept_with_row(fields), transaction.atomic():
            conversation, contact = conversations.for_outgoing(session, phone, chat_jid)
            message = Message.objects.create(
                session=session, direction=Message.Direction.OUT, to_phone=phone, chat_jid=chat_jid,
                status=S.QUEUED, idempotency_key=idempotency_key or None, request_hash=digest,
                conversation=conversation, contact=contact, **fields)
            message.session = session
            conversations.note_outgoing([message])
            schema_name, session_id = connection.schema_name, session.pk
            transaction.on_commit(lambda: sending.wake(schema_name, session_id))
    except IntegrityError:  # the same key in a concurrent request: that one won (kept_with_row removed our file)
        existing = _replay(idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return message, True


@dataclass
class ReceiptResult:
    moved: list = field(default_factory=list)
    # Ids that matched no message while one of the session's messages is still `sending`: WhatsApp can answer
    # before send_on_host has committed the id it returned, so these are worth trying again shortly.
    early_ids: list = field(default_factory=list)


def apply_receipt(session, data, now=None):
    """A RECEIPT event of `session` (ids, status delivered|read), or several of one status together: the
    messages it names move forward in one statement (never backwards, never out of failed or sending), then are
    told. In the session's schema."""
    result = ReceiptResult()
    status = data.get("status")
    if status not in (S.DELIVERED, S.READ):
        return result
    ids = list(dict.fromkeys(str(i) for i in (data.get("ids") or []) if i))
    if not ids:
        return result
    now = now or timezone.now()
    behind = [s for s, rank in RANK.items() if rank < RANK[status]]
    table = connection.ops.quote_name(Message._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in Message._meta.concrete_fields)
    moved = list(Message.objects.raw(
        f"UPDATE {table} SET status = %s, delivered_at = COALESCE(delivered_at, %s), "
        f"read_at = CASE WHEN %s THEN %s ELSE read_at END "
        f"WHERE session_id = %s AND direction = %s AND provider_message_id = ANY(%s) AND status = ANY(%s) "
        f"RETURNING {columns}",
        [status, now, status == S.READ, now, session.pk, Message.Direction.OUT, ids, behind]))
    moved.sort(key=lambda m: m.pk)
    for message in moved:
        message.session = session
    result.moved = moved
    sending.tell(session, f"message.{status}", moved)
    rest = set(ids) - {m.provider_message_id for m in moved}
    if rest:
        outgoing = Message.objects.filter(session=session, direction=Message.Direction.OUT)
        known = set(outgoing.filter(provider_message_id__in=rest).values_list("provider_message_id", flat=True))
        missing = [i for i in ids if i in rest and i not in known]
        if missing and outgoing.filter(status=S.SENDING).exists():
            result.early_ids = missing
    return result


def store_inbound(session, data, now=None):
    """A MESSAGE event of `session`: store a received message of any type (message_types.inbound_fields: media
    kept in the tenant's storage, or media_error saying why not — the message is stored either way).
    Messages the linked phone sent itself (from_me) are not stored in this slice. When WhatsApp gives no phone
    number for the sender (an @lid identity), the sender's JID is kept and sender_unresolved is set."""
    if data.get("from_me"):
        return None
    provider_id = str(data.get("id") or "")[:128]
    if provider_id and Message.objects.filter(session=session, direction=Message.Direction.IN,
                                              provider_message_id=provider_id).exists():
        return None  # a redelivered event
    sender_jid = str(data.get("sender") or data.get("chat") or "")[:100]
    sender_phone = data.get("sender_phone")
    fields = message_types.inbound_fields(data)
    with media.kept_with_row(fields):
        message = Message.objects.create(
            session=session, direction=Message.Direction.IN, status=S.RECEIVED,
            from_phone=(sender_phone or "")[:20], sender_jid=sender_jid, sender_unresolved=not sender_phone,
            chat_jid=str(data.get("chat") or sender_jid)[:100], provider_message_id=provider_id,
            created_at=now or timezone.now(), **fields)
    message.session = session
    message.conversation, message.contact = conversations.for_inbound(session, message, data)
    if message.conversation_id or message.contact_id:
        message.save(update_fields=["conversation", "contact"])
    sending.tell(session, "message.received", [message],
                 conversations={message.conversation_id: message.conversation} if message.conversation_id else None)
    return message


def sweep_queued(now=None):
    """In this schema: drain again the sessions with outgoing messages still queued past their next_attempt_at
    (or, never claimed, older than RETRY_AFTER: their wake was lost), earliest first; those include messages
    whose pacing slot has come (a daily cap pushes them to the next day). Messages at the attempt cap fail. Returns
    how many messages were due."""
    from django.db.models import Q

    now = now or timezone.now()
    retry_after = sending.RETRY_AFTER
    sending.fail_capped(Message.objects.all())
    due = list(Message.objects.filter(direction=Message.Direction.OUT, status=S.QUEUED)
               .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lte=now - retry_after))
               .order_by("pk").values_list("pk", "session_id")[:5000])
    # Due by the sweeper's clock is due for the drain too (which reads its own clock).
    Message.objects.filter(pk__in=[pk for pk, _ in due]).update(next_attempt_at=None)
    schema_name = connection.schema_name
    for session_id in dict.fromkeys(session_id for _, session_id in due):
        sending.route(schema_name, session_id)
    # A host that died between claiming and recording leaves `sending`: WhatsApp may or may not have the message,
    # so it is not sent again (no duplicates) but reported as failed with what is known.
    stuck = list(Message.objects.filter(direction=Message.Direction.OUT, status=S.SENDING,
                                        next_attempt_at__lte=now - sending.STUCK_SENDING).select_related("session"))
    for message in stuck:
        with transaction.atomic():
            sending.tell(message.session, "message.failed", sending.record_failed([(
                message, "host_lost: the session host stopped while sending; WhatsApp may or may not have received "
                         "this message")]))
    return len(due)
