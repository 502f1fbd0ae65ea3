"""State changes of messages (whatsapp.models.Message) outside the session host's drain, in the tenant's schema.

The sending pipeline (ARCHITECTURE.md): queue_message commits a `queued` row and, on commit, wakes the session's
sender (whatsapp.messaging.drain: the host running the session claims, sends and records batches of due messages).
Receipts move sent messages to delivered and read, never backwards (apply_receipt; one that arrives before its
send is recorded is kept by the host and applied once it is). Inbound messages are stored by store_inbound. A
message whose wake was lost stays `queued` and sweep_queued drains its session again; after
WHATSAPP_MESSAGE_MAX_ATTEMPTS attempts it is `failed`, and one a dead host left `sending` is reported failed, not
resent. Every transition emits its webhook event and a live update (whatsapp.messaging.drain.tell).
"""
import contextlib
import hashlib
import json
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, FilteredRelation, Q
from django.utils import timezone

from billing import entitlements
from core import rows
from core.errors import CommonError, DomainError
from whatsapp.conversations import actions as conversations
from whatsapp.conversations.models import Contact, Conversation
from whatsapp.sessions.models import WhatsAppSession

from . import drain as sending
from . import latency, media, ratelimit, recipients
from . import types as message_types
from .errors import MessagingError
from .models import BlockedNumber, Message

S = Message.Status
RANK = {S.QUEUED: 0, S.SENT: 1, S.DELIVERED: 2, S.READ: 3}


# --- idempotency --------------------------------------------------------------------------------------------


def request_hash(body):
    canonical = json.dumps({k: body.get(k) for k in message_types.REQUEST_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(keys, digests, beyond=None):
    """The messages made before under these Idempotency-Key values (one per message of the request), if the
    request was seen; 409 idempotency_conflict when it was seen with another body (or, `beyond` being the key a
    message after the last would have, another number of messages)."""
    existing = {m.idempotency_key: m for m in Message.objects.filter(idempotency_key__in=[*keys, beyond])}
    if not existing:
        return None
    if len(existing) != len(keys) or any(k not in existing or existing[k].request_hash != d
                                         for k, d in zip(keys, digests)):
        ids = sorted(m.pk for m in existing.values())
        raise DomainError(MessagingError.IDEMPOTENCY_CONFLICT,
                          "This Idempotency-Key was already used with a different request body.",
                          {"message_id": ids[0]} if len(keys) == 1 and len(ids) == 1 else {"message_ids": ids})
    return [existing[k] for k in keys]


# --- the pipeline -------------------------------------------------------------------------------------------

BATCH_MAX = 100  # messages in one POST /api/v1/messages/batch


@dataclass
class Prepared:
    """One message of a request, validated and ready to insert (with its conversation when it has one)."""
    session: WhatsAppSession
    fields: dict
    phone: str
    chat_jid: str
    digest: str
    conversation: object = None
    contact: object = None


def _lookup(name, phone, chat_jid):
    """(session or None, its conversation with `chat_jid` or None, that conversation's contact or None, whether
    the tenant blocked `phone`): the hot path of the API in one statement, written out (core.rows), or compiled by
    the ORM with SPEED_PATH_SQL=false (_lookup_by_orm), to measure the difference again."""
    if not settings.SPEED_PATH_SQL:
        return _lookup_by_orm(name, phone, chat_jid)
    found = rows.select(
        WhatsAppSession, "s",
        f"LEFT JOIN {rows.table(Conversation)} c ON c.session_id = s.id AND c.chat_jid = %s "
        f"LEFT JOIN {rows.table(Contact)} ct ON ct.id = c.contact_id WHERE s.name = %s",
        [phone, chat_jid, name], joined=[(Conversation, "c"), (Contact, "ct")],
        extra=[f"EXISTS (SELECT 1 FROM {rows.table(BlockedNumber)} b WHERE b.phone = %s)"])
    return found[0] if found else (None, None, None, False)


def _lookup_by_orm(name, phone, chat_jid):
    """_lookup's statement and result, the statement compiled by the ORM on every call."""
    session = (WhatsAppSession.objects.filter(name=name)
               .annotate(number_conversation=FilteredRelation("conversations",
                                                              condition=Q(conversations__chat_jid=chat_jid)),
                         number_blocked=Exists(BlockedNumber.objects.filter(phone=phone)))
               .select_related("number_conversation__contact").first())
    if session is None:
        return None, None, None, False
    # Taken off the session, which the request keeps: the ORM leaves them there, core.rows never does.
    conversation = session.__dict__.pop("number_conversation", None)  # the ORM sets nothing for a missing row
    blocked = session.__dict__.pop("number_blocked")
    contact = conversation.contact if conversation is not None else None
    return session, conversation, contact, blocked


# A linked session that should run and is on its way back (a host starting it, taking it over, or reconnecting)
# queues sends: they wait in the outbox and go once it is connected.
COMING_BACK = (WhatsAppSession.Status.STARTING, WhatsAppSession.Status.RECONNECTING)


def accepts_sends(session):
    """Connected, or linked, wanted running and coming back. Logged out, never linked, stopped (by a person or after
    giving up reconnecting), or in error: 409 session_not_connected."""
    if session.status == WhatsAppSession.Status.CONNECTED:
        return True
    return session.status in COMING_BACK and session.is_linked and session.should_run


def prepare(body, files=None, lookups=None):
    """Validate one message (`body`: the API's fields, `files` its upload) or raise its DomainError: an unknown
    session first, then the message's own fields, then its recipient, then the session's state. `lookups`
    keeps a request's lookups (a batch to one number looks it up once)."""
    try:
        phone, chat_jid = recipients.parse_recipient(body.get("to"))
        bad_recipient = None
    except DomainError as exc:
        phone, chat_jid, bad_recipient = "", "", exc
    key = (str(body.get("session") or ""), phone, chat_jid)
    lookups = {} if lookups is None else lookups
    if key not in lookups:
        lookups[key] = _lookup(*key)
    session, conversation, contact, blocked = lookups[key]
    if session is None:
        raise DomainError(CommonError.NOT_FOUND, f"No session named '{body.get('session')}'.")
    fields = message_types.parse(body, files)
    if bad_recipient is not None:
        raise bad_recipient
    if phone:
        recipients.check_phone_allowed(phone, tenant_blocked=blocked)
    if not accepts_sends(session):
        raise DomainError(MessagingError.SESSION_NOT_CONNECTED,
                          f"The session '{session.name}' is not connected; start it and link a phone first.",
                          {"status": session.status})
    if conversation is not None:
        conversation.contact = contact
        if not conversations.is_current(conversation, phone, chat_jid):
            conversation = contact = None  # for_outgoing makes or completes them in the insert's transaction
    return Prepared(session, fields, phone, chat_jid, request_hash(body), conversation, contact)


def queue_message(tenant, *, body, files=None, idempotency_key=None):
    """Validate `body` (the API's fields; `files` the uploaded media) and commit a queued message; returns
    (message, created). With an idempotency key used before: the same body returns that message (created False),
    another body is 409 idempotency_conflict. Nothing is written for a rejected request."""
    entitlements.require_write(tenant)
    keys = [idempotency_key] if idempotency_key else None
    if keys:
        existing = _replay(keys, [request_hash(body)])
        if existing is not None:
            return existing[0], False
    item = prepare(body, files)
    ratelimit.check_send_rate(tenant)
    messages, created = _insert([item], keys)
    return messages[0], created


def queue_automatic(body):
    """An automatic answer (whatsapp.automation): `body` validated like an API message (prepare) and queued in the
    same pipeline (paced, capped, recorded, webhooks fired), without the API's rate limit or Idempotency-Key. Call
    inside a transaction to commit the message with what records why it was sent: a DomainError (validation) is
    raised before anything is written, and the insert takes no savepoint of its own (its caller's transaction is
    the unit). Returns the message."""
    messages, _ = _insert([prepare(body)], None, savepoint=False)
    return messages[0]


def queue_messages(tenant, *, bodies, idempotency_key=None, check=None):
    """A batch (POST /api/v1/messages/batch): every message validated first (`check(body)`, the API's shape
    checks, then prepare), then all queued in one transaction (one insert), or none: an invalid message rejects
    the request with every message's error. Returns (messages, created); an Idempotency-Key covers the batch as a
    whole."""
    entitlements.require_write(tenant)
    if not isinstance(bodies, list) or not bodies:
        raise DomainError(MessagingError.MISSING_MESSAGES, "Send a non-empty list of messages in `messages`.")
    if len(bodies) > BATCH_MAX:
        raise DomainError(MessagingError.BATCH_TOO_LARGE, f"A batch holds at most {BATCH_MAX} messages; this one has "
                                               f"{len(bodies)}.", {"max": BATCH_MAX, "count": len(bodies)})
    if not all(isinstance(body, dict) for body in bodies):
        raise DomainError(MessagingError.INVALID_MESSAGES, "Every entry of `messages` must be an object.")
    keys = [f"{idempotency_key}#{index}" for index in range(len(bodies) + 1)] if idempotency_key else None
    if keys:
        beyond = keys.pop()
        existing = _replay(keys, [request_hash(body) for body in bodies], beyond)
        if existing is not None:
            return existing, False
    prepared, errors, lookups = [], [], {}
    for index, body in enumerate(bodies):
        try:
            if check is not None:
                check(body)
            prepared.append(prepare(body, None, lookups))
        except DomainError as exc:
            errors.append({"index": index, "status": exc.status, "code": exc.code.value,
                           "message": exc.message, "details": exc.details})
    if errors:
        statuses = {error["status"] for error in errors}
        raise DomainError(MessagingError.INVALID_MESSAGES,
                          f"{len(errors)} of {len(bodies)} messages cannot be sent (the first: message "
                          f"{errors[0]['index']}, {errors[0]['message']}); nothing was queued.", {"errors": errors},
                          status=statuses.pop() if len(statuses) == 1 else None)
    ratelimit.check_send_rate(tenant, count=len(prepared))
    return _insert(prepared, keys)


def _insert(prepared, keys, *, savepoint=True):
    """Commit the validated messages as `queued` (one insert) and wake their sessions' senders on commit. Their
    conversations' last message moves when the drain handles them (whatsapp.messaging.drain.record): a burst to one
    number would otherwise queue every request behind that conversation's row lock. Returns (messages, True), or
    the concurrent request's messages and False when another request with the same Idempotency-Key committed
    first."""
    try:
        with contextlib.ExitStack() as files, transaction.atomic(savepoint=savepoint):
            for item in prepared:
                files.enter_context(media.kept_with_row(item.fields))
            chats = {}
            messages = []
            for index, item in enumerate(prepared):
                chat = (item.session.pk, item.phone, item.chat_jid)
                if chat not in chats:
                    chats[chat] = ((item.conversation, item.contact) if item.conversation is not None
                                   else conversations.for_outgoing(item.session, item.phone, item.chat_jid))
                conversation, contact = chats[chat]
                messages.append(Message(
                    session=item.session, direction=Message.Direction.OUT, to_phone=item.phone,
                    chat_jid=item.chat_jid, status=S.QUEUED, idempotency_key=keys[index] if keys else None,
                    request_hash=item.digest, conversation=conversation, contact=contact, **item.fields))
            if len(messages) == 1:  # half the CPU of bulk_create for one row (measured: 0.25 vs 0.52 ms)
                messages[0].save(force_insert=True)
            else:
                Message.objects.bulk_create(messages)
            for message in messages:  # new rows: no automation log names them yet (its row, made after, sets this)
                Message.automation.related.set_cached_value(message, None)
            schema_name = connection.schema_name
            for session_id in dict.fromkeys(m.session_id for m in messages):
                transaction.on_commit(lambda session_id=session_id: sending.wake(schema_name, session_id))
    except IntegrityError:  # the same key in a concurrent request: that one won (kept_with_row removed our files)
        existing = _replay(keys, [item.digest for item in prepared]) if keys else None
        if existing is None:
            raise
        return existing, False
    return messages, True


@dataclass
class ReceiptResult:
    moved: list = field(default_factory=list)
    # Ids that matched no message while one of the session's messages is still `sending` (WhatsApp can answer
    # before the drain has committed the id it returned), or whose message was recorded as sent while this receipt
    # was being applied: worth trying again shortly.
    early_ids: list = field(default_factory=list)


def apply_receipt(session, data, now=None):
    """A RECEIPT event of `session` (ids, status delivered|read), or several of one status together: the
    messages it names move forward in one statement (never backwards, never out of sending, out of failed only
    when the failure was a lost host: WhatsApp's receipt proves it had the message), then are told. A receipt for
    a message still `sending` (its id was chosen before the send) is early: tried again once the send is
    recorded. In the session's schema."""
    result = ReceiptResult()
    status = data.get("status")
    if status not in (S.DELIVERED, S.READ):
        return result
    ids = list(dict.fromkeys(str(i) for i in (data.get("ids") or []) if i))
    if not ids:
        return result
    now = now or timezone.now()
    behind = [s for s, rank in RANK.items() if rank < RANK[status]]
    moved = rows.run(Message, (
        f"UPDATE {rows.table(Message)} SET status = %s, delivered_at = COALESCE(delivered_at, %s), "
        f"read_at = CASE WHEN %s THEN %s ELSE read_at END, sent_at = COALESCE(sent_at, %s), failure_reason = '' "
        f"WHERE session_id = %s AND direction = %s AND provider_message_id = ANY(%s) AND (status = ANY(%s) "
        f"OR (status = %s AND failure_reason LIKE %s)) "
        f"RETURNING {rows.columns(Message, Message._meta.db_table)}"),
        [status, now, status == S.READ, now, now, session.pk, Message.Direction.OUT, ids, behind, S.FAILED,
         f"{sending.HOST_LOST}:%"])
    moved.sort(key=lambda m: m.pk)
    latency.delivered(moved, now)
    for message in moved:
        message.session = session
    result.moved = moved
    sending.tell(session, f"message.{status}", moved)
    rest = set(ids) - {m.provider_message_id for m in moved}
    if rest:
        outgoing = Message.objects.filter(session=session, direction=Message.Direction.OUT)
        known = dict(outgoing.filter(provider_message_id__in=rest).values_list("provider_message_id", "status"))
        # Recorded as sent just after the update above looked (each statement sees what is committed when it
        # starts): not moved, but not ahead either, so it is tried again like an early one.
        just_recorded = [i for i in ids if known.get(i) in behind or known.get(i) == S.SENDING]
        missing = [i for i in ids if i in rest and i not in known]
        if missing and not outgoing.filter(status=S.SENDING).exists():
            missing = []
        result.early_ids = just_recorded + missing
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
    try:
        with media.kept_with_row(fields), transaction.atomic():
            message = Message.objects.create(
                session=session, direction=Message.Direction.IN, status=S.RECEIVED,
                from_phone=(sender_phone or "")[:20], sender_jid=sender_jid, sender_unresolved=not sender_phone,
                chat_jid=str(data.get("chat") or sender_jid)[:100], provider_message_id=provider_id,
                created_at=now or timezone.now(), **fields)
    except IntegrityError as exc:  # another host stored the same redelivered message just now
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) == "whatsapp_msg_inbound_once":
            return None
        raise
    message.session = session
    message.conversation, message.contact = conversations.for_inbound(session, message, data)
    if message.conversation_id or message.contact_id:
        message.save(update_fields=["conversation", "contact"])
    sending.tell(session, "message.received", [message],
                 conversations={message.conversation_id: message.conversation} if message.conversation_id else None)
    return message


def due_now(session_id, now=None):
    """The session (re)connected: its queued messages put back to wait for the connection (not those waiting for
    their pacing slot) are due at once. In the session's schema. Returns how many."""
    now = now or timezone.now()
    return Message.objects.filter(session_id=session_id, direction=Message.Direction.OUT, status=S.QUEUED,
                                  paced_until__isnull=True, next_attempt_at__gt=now).update(next_attempt_at=None)


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
    sending.fail([(message, sending.host_lost_reason("found by the sweeper")) for message in stuck])
    return len(due)
