"""State changes of messages (whatsapp.models.Message), in the tenant's schema.

The sending pipeline (ARCHITECTURE.md): queue_message commits a `queued` row, then a task on commit goes to the
session hosts' shared `whatsapp` queue (tasks.send_message → dispatch): it counts the attempt in the row and, on
the host running the session, claims the row (queued → sending) in the same transaction and sends at once;
on another host it forwards the send to the lease holder. send_on_host calls the provider outside any
transaction and records `sent` with the provider's id or `failed` with the reason. A message whose task was lost stays `queued` and sweep_queued re-dispatches it; after
WHATSAPP_MESSAGE_MAX_ATTEMPTS dispatches it is `failed`. Receipts move it to delivered and read (one that
arrives before its send is recorded is kept by the host and applied once it is). Every transition emits its
webhook event and a live update.
"""
import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing import entitlements
from config.api import ApiError

from . import conversations, live, media, message_types, pacing, ratelimit, recipients
from .models import Message, WhatsAppSession
from .webhooks.actions import emit_event

S = Message.Status
RETRY_AFTER = timedelta(seconds=60)  # a dispatched message still queued this long is sent again by the sweeper
RANK = {S.QUEUED: 0, S.SENT: 1, S.DELIVERED: 2, S.READ: 3}
STUCK_SENDING = timedelta(minutes=5)
# Provider errors that say "not now" rather than "never": the message is queued again, up to the attempt cap.
TEMPORARY_SEND_ERRORS = {"not_connected", "busy"}
# A message waiting for its pacing slot is sent again by a task with a countdown when the slot is this close (well
# under the broker's visibility timeout, so the countdown is never redelivered early); later slots (a full day)
# are left to the sweeper, which picks rows whose next_attempt_at has passed.
PACING_COUNTDOWN_MAX = timedelta(seconds=30)


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


def _emit(message, event_type):
    emit_event(event_type, message_payload(message))
    live.message_changed(message)


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
            with live.deferred_updates() as updates:  # published by the send task, not by this request
                live.message_changed(message)
            schema_name, message_id = connection.schema_name, message.pk
            transaction.on_commit(lambda: _enqueue(schema_name, message_id, live_updates=updates, to_host=True))
    except IntegrityError:  # the same key in a concurrent request: that one won (kept_with_row removed our file)
        existing = _replay(idempotency_key, digest) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return message, True


def _enqueue(schema_name, message_id, live_updates=None, to_host=False):
    """The send task of a queued message. `to_host`: on the session hosts' shared queue, where the host running
    the session dispatches and sends in one task (dispatch); otherwise (the sweeper, a paced retry) on the
    default queue, from which dispatch forwards to the lease holder: a message stranded while no host runs is
    still counted towards its attempt cap there."""
    from .host.queues import SHARED_QUEUE
    from .tasks import send_message

    args = (schema_name, message_id, live_updates) if live_updates else (schema_name, message_id)
    if to_host:
        send_message.apply_async(args, queue=SHARED_QUEUE)
    else:
        send_message.delay(*args)


def _max_attempts():
    return settings.WHATSAPP_MESSAGE_MAX_ATTEMPTS


def dispatch(schema_name, message_id, now=None):
    """Task body: take the message's pacing slot (whatsapp.pacing), count the attempt in the row (the cap lives
    in the database, so a redelivered task or a sweep cannot send forever), then send: right here when this
    process is the host running the session (an accepted message's task comes through the hosts' shared queue,
    _enqueue), else by asking the host holding the session's lease. No host: it stays queued.

    When the slot is later than now the message waits, still `queued`, with next_attempt_at = its slot, a
    paced_until = the slot and no attempt counted (waiting is not failing); a task
    with a countdown or the sweeper dispatches it again at the slot, and it goes then without a new slot."""
    from django_tenants.utils import schema_context

    from .host import commands, runtime

    now = now or timezone.now()
    with schema_context(schema_name):
        with transaction.atomic():
            message = (Message.objects.select_for_update(of=("self",)).select_related("session")
                       .filter(pk=message_id, direction=Message.Direction.OUT, status=S.QUEUED).first())
            if message is None:
                return False
            waiting = message.paced_until is not None
            if waiting and message.next_attempt_at and message.next_attempt_at > now:
                return False  # early (a duplicate task): its countdown or the sweeper sends it at its slot
            if message.attempts >= _max_attempts():
                mark_failed(message, f"not_sent: no session host sent it after {message.attempts} attempts")
                return False
            if not waiting:
                slot = pacing.reserve_slot(message.session_id, now, message_id=message.pk)
                if slot > now:
                    _wait_for_slot(schema_name, message, slot, now)
                    return False
            host, key = runtime.current_host(), f"{schema_name}:{message.session_id}"
            # This process hosts the session (the task came through the hosts' queue): it sends now, no second
            # hop, and the claim (queued → sending, send_on_host's guard against a duplicate) is made here, in
            # the transaction that counts the attempt.
            local = host is not None and host.provider(key) is not None
            message.attempts += 1
            message.next_attempt_at = now + RETRY_AFTER
            message.paced_until, message.paced_reason = None, ""
            fields = ["attempts", "next_attempt_at", "paced_until", "paced_reason"]
            if local:
                message.status = S.SENDING
                fields.append("status")
            message.save(update_fields=fields)
        if local:
            host.command(key, "send", message_id=message.pk, claimed=message)
            return True
        try:
            commands.send(schema_name, message.session_id, "send", message_id=message.pk)
        except ApiError:  # session_not_running: the sweeper tries again once a host runs it
            return False
    return True


def _wait_for_slot(schema_name, message, slot, now):
    message.next_attempt_at = message.paced_until = slot
    message.paced_reason = "daily_cap" if pacing.day_start(slot) > pacing.day_start(now) else "interval"
    message.save(update_fields=["next_attempt_at", "paced_until", "paced_reason"])
    wait = slot - now
    if wait <= PACING_COUNTDOWN_MAX:
        from .tasks import send_message

        message_id, countdown = message.pk, wait.total_seconds()
        transaction.on_commit(lambda: send_message.apply_async((schema_name, message_id), countdown=countdown))


def send_on_host(schema_name, session_id, provider, message_id, claimed=None):
    """On the session host: send one queued message through `provider`, record sent or failed.

    The row is claimed (queued → sending) in a short transaction of its own, and the provider call runs outside
    any transaction: a slow WhatsApp never holds a row lock or a database transaction open. `claimed`: the
    message, already moved to sending by dispatch in this process (no claim here, no second read).
    """
    from django_tenants.utils import schema_context

    from .providers.base import ProviderError

    with schema_context(schema_name):
        if claimed is not None:
            message = claimed
            if provider is None:  # the session stopped here since dispatch claimed it: back in the queue, unsent
                with transaction.atomic():
                    Message.objects.filter(pk=message.pk, status=S.SENDING).update(status=S.QUEUED)
                return None
        else:
            with transaction.atomic():
                message = (Message.objects.select_for_update().select_related("session")
                           .filter(pk=message_id, session_id=session_id, status=S.QUEUED).first())
                if message is None or provider is None:  # already claimed (a duplicate task), or not running here
                    return None
                message.status = S.SENDING
                message.save(update_fields=["status"])
        try:
            provider_id = provider.send(message.chat_jid, message_types.outgoing(message))
        except ProviderError as exc:
            with transaction.atomic():
                if exc.code in TEMPORARY_SEND_ERRORS and message.attempts < _max_attempts():
                    # The connection is down for a moment (reconnecting): back in the queue, the sweeper sends it
                    # again at next_attempt_at; the attempt already counts towards the cap.
                    message.status, message.failure_reason = S.QUEUED, f"{exc.code}: {exc}"[:500]
                    message.save(update_fields=["status", "failure_reason"])
                else:
                    mark_failed(message, f"{exc.code}: {exc}")
            return message
        with transaction.atomic():
            mark_sent(message, provider_id)
        return message


def mark_sent(message, provider_message_id, now=None):
    message.status, message.provider_message_id = S.SENT, str(provider_message_id or "")[:128]
    message.sent_at, message.next_attempt_at, message.failure_reason = now or timezone.now(), None, ""
    message.save(update_fields=["status", "provider_message_id", "sent_at", "next_attempt_at", "failure_reason"])
    _emit(message, "message.sent")
    return message


def mark_failed(message, reason):
    message.status, message.failure_reason, message.next_attempt_at = S.FAILED, str(reason)[:500], None
    message.paced_until, message.paced_reason = None, ""
    message.save(update_fields=["status", "failure_reason", "next_attempt_at", "paced_until", "paced_reason"])
    _emit(message, "message.failed")
    return message


def _advance(message, status, now):
    """Move an outgoing message forward to delivered or read; never backwards, never out of failed."""
    if message.status not in RANK or RANK[status] <= RANK[message.status]:
        return False
    message.status = status
    if status in (S.DELIVERED, S.READ) and message.delivered_at is None:
        message.delivered_at = now
    if status == S.READ:
        message.read_at = now
    message.save(update_fields=["status", "delivered_at", "read_at"])
    _emit(message, f"message.{status}")
    return True


def mark_delivered(message, now=None):
    return _advance(message, S.DELIVERED, now or timezone.now())


def mark_read(message, now=None):
    return _advance(message, S.READ, now or timezone.now())


@dataclass
class ReceiptResult:
    moved: list = field(default_factory=list)
    # Ids that matched no message while one of the session's messages is still `sending`: WhatsApp can answer
    # before send_on_host has committed the id it returned, so these are worth trying again shortly.
    early_ids: list = field(default_factory=list)


def apply_receipt(session, data, now=None):
    """A RECEIPT event (ids, status delivered|read) of `session`; in its schema."""
    result = ReceiptResult()
    status = data.get("status")
    if status not in (S.DELIVERED, S.READ):
        return result
    ids = [str(i) for i in (data.get("ids") or []) if i]
    found = set()
    for message in (Message.objects.select_for_update()
                    .filter(session=session, direction=Message.Direction.OUT, provider_message_id__in=ids)):
        message.session = session
        found.add(message.provider_message_id)
        if _advance(message, status, now or timezone.now()):
            result.moved.append(message)
    missing = [i for i in ids if i not in found]
    if missing and Message.objects.filter(session=session, direction=Message.Direction.OUT,
                                          status=S.SENDING).exists():
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
    _emit(message, "message.received")
    return message


def sweep_queued(now=None):
    """In this schema: dispatch again the outgoing messages still queued past their next_attempt_at (or, never
    dispatched, older than RETRY_AFTER), earliest first. That includes messages whose pacing slot has come (a
    daily cap pushes them to the next day). Returns how many were dispatched."""
    from django.db.models import F, Q

    now = now or timezone.now()
    due = (Message.objects.filter(direction=Message.Direction.OUT, status=S.QUEUED)
           .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lte=now - RETRY_AFTER))
           .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
           .values_list("pk", flat=True)[:500])
    schema_name, count = connection.schema_name, 0
    for message_id in list(due):
        _enqueue(schema_name, message_id)
        count += 1
    # A host that died between claiming and recording leaves `sending`: WhatsApp may or may not have the message,
    # so it is not sent again (no duplicates) but reported as failed with what is known.
    for message in Message.objects.filter(direction=Message.Direction.OUT, status=S.SENDING,
                                          next_attempt_at__lte=now - STUCK_SENDING):
        with transaction.atomic():
            mark_failed(message, "host_lost: the session host stopped while sending; WhatsApp may or may not have "
                                 "received this message")
    return count
