"""The session host's half of the sending pipeline (ARCHITECTURE.md): drain a session's queue.

Accepting a message (whatsapp.messaging.actions.queue_message) commits a `queued` row and, on commit, wakes the
session's sender (wake): one drain task per burst rather than one task per message, as a flag in Redis says a
drain is on its way or running (the drain clears it when it finds the queue empty, then looks once more). The
task (whatsapp.tasks.drain_session, acks_late) goes to the session hosts' shared queue; the host running the
session drains it (route), one drain per session at a time (SessionHost.drain), so a session's messages go out
in the order they were accepted:

  claim   queued rows due now → `sending`, the attempt counted in the row (the cap lives in the database)
  send    each through the provider, outside any transaction
  record  `sent` with WhatsApp's id (one statement for the batch) or `failed` with the reason
  tell    the batch's webhook deliveries, its conversations' last message (one statement) and live updates

A claim takes as many messages as the provider sends in SEND_WINDOW_SECONDS (measured per session, 1 to
BATCH_MAX): a host killed mid-batch leaves at most that window `sending`, in doubt, which the sweeper
(whatsapp.messaging.actions.sweep_queued) reports failed rather than sends twice. Against the real WhatsApp a send takes
a network round trip, so claims are of one message; the simulator fills a batch.

With pacing on (whatsapp.messaging.pacing) each message takes its slot as it is claimed; one whose slot is later stays
`queued` with paced_until (waiting is not failing: no attempt counted) and a wake with a countdown (at most
PACING_COUNTDOWN_MAX, well under the broker's visibility timeout) or the sweeper drains it when the slot comes.
A temporary provider error (the connection is down) puts the message back for RETRY_AFTER with its attempt
counted, and the rest of the batch back at once without one; the session's next CONNECTED wakes the drain.
"""
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, prefetch_related_objects
from django.utils import timezone
from django_tenants.utils import schema_context
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from core import rows
from core.errors import DomainError
from core.redis import client
from whatsapp.conversations import actions as conversations
from whatsapp.host import commands, runtime
from whatsapp.host.errors import HostError
from whatsapp.host.queues import SHARED_QUEUE
from whatsapp.providers.base import ProviderError
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.webhooks.actions import emit_events

from . import latency, pacing
from . import types as message_types
from .models import Message
from .payloads import message_payload, messages_changed

log = logging.getLogger(__name__)
S = Message.Status

RETRY_AFTER = timedelta(seconds=60)  # a claimed message put back by a temporary error goes again after this
# `sending` this long past its claim's next_attempt_at: its host died mid-send and no host took the session over
# (a host that does settles them at once: settle_in_doubt); whatsapp.messaging.actions.sweep_queued fails them.
STUCK_SENDING = timedelta(minutes=1)
# Provider errors that say "not now" rather than "never": the message is queued again, up to the attempt cap.
TEMPORARY_SEND_ERRORS = {"not_connected", "busy"}
# A message waiting for its pacing slot is drained by a wake with a countdown when the slot is this close; later
# slots (a full day) are left to the sweeper, which picks rows whose next_attempt_at has passed.
PACING_COUNTDOWN_MAX = timedelta(seconds=30)
BATCH_MAX = 100
SEND_WINDOW_SECONDS = 0.05
WAKE_TTL_SECONDS = 60  # a wake flag whose task was lost lets the next commit through after this
# After sending, a drain that finds the queue empty looks again every LINGER_STEP_SECONDS for LINGER_SECONDS
# before it ends: a steady trickle of messages is then sent in small batches by one drain.
LINGER_SECONDS = 0.02
LINGER_STEP_SECONDS = 0.005


def max_attempts():
    return settings.WHATSAPP_MESSAGE_MAX_ATTEMPTS


# --- waking the sender ------------------------------------------------------------------------------------------


def _wake_key(schema_name, session_id):
    # The database name keeps two installations (or test suites) sharing one Redis apart.
    return f"sb:drain:{connection.settings_dict['NAME']}:{schema_name}:{session_id}"


def wake(schema_name, session_id, *, countdown=None, force=False):
    """Have the session drained: after the commit that queued its messages (at most one drain task on its way
    per session), or `countdown` seconds from now (a pacing slot), or at once whatever is on its way (`force`:
    the session just connected, the sweeper). Returns whether a task was sent. Redis or the broker being down
    loses nothing: the rows are committed and the sweeper drains them."""
    try:
        if countdown is None and not force:
            if not client().set(_wake_key(schema_name, session_id), 1, nx=True, ex=WAKE_TTL_SECONDS):
                return False
        drain_session.apply_async((schema_name, session_id), queue=SHARED_QUEUE, countdown=countdown)
    except (RedisError, OperationalError):
        log.warning("could not wake the sender of %s:%s; the sweeper will", schema_name, session_id, exc_info=True)
        return False
    return True


@shared_task(name="whatsapp.tasks.drain_session", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def drain_session(schema_name, session_id):
    """Send a session's queued messages: on the host running it, else through the host holding its lease
    (route). Acknowledged once done: a drain cut short by a dying worker is delivered again, and it only ever
    claims what is still queued (the attempt cap is in the rows)."""
    route(schema_name, session_id)


def route(schema_name, session_id):
    """The drain task: drain here when this process hosts the session, else ask the host holding its lease.
    With no host, the due messages count an attempt, so that a session nobody runs fails its messages at the
    cap rather than keeping them forever. Returns "here", "forwarded" or "unhosted"."""
    host, key = runtime.current_host(), f"{schema_name}:{session_id}"
    if host is not None and host.provider(key) is not None:
        host.drain(key)  # the drain clears the wake flag when it finds the queue empty
        return "here"
    try:
        commands.send(schema_name, session_id, "drain")
        return "forwarded"
    except DomainError as exc:
        if exc.code != HostError.SESSION_NOT_RUNNING:
            raise
        _clear_wake(schema_name, session_id)
        with schema_context(schema_name):
            count_unhosted(session_id)
        return "unhosted"


def _clear_wake(schema_name, session_id):
    """Later commits wake a new drain."""
    try:
        client().delete(_wake_key(schema_name, session_id))
    except RedisError:  # the flag expires by itself (WAKE_TTL_SECONDS); the sweeper covers the meantime
        log.warning("could not clear the wake flag of %s:%s", schema_name, session_id, exc_info=True)


# --- the drain --------------------------------------------------------------------------------------------------


class SendWindow:
    """How many messages one claim takes: as many as this session's provider sends in SEND_WINDOW_SECONDS,
    from an average of the sends measured so far (one until there is one)."""

    def __init__(self):
        self.seconds_per_send = None

    def size(self):
        if self.seconds_per_send is None:
            return 1
        return max(1, min(BATCH_MAX, int(SEND_WINDOW_SECONDS / max(self.seconds_per_send, 1e-6))))

    def observe(self, count, seconds):
        if count:
            per = seconds / count
            self.seconds_per_send = per if self.seconds_per_send is None else 0.7 * self.seconds_per_send + 0.3 * per


@dataclass
class Outcome:
    sent: list = field(default_factory=list)  # [(message, provider id)]
    failed: list = field(default_factory=list)  # [(message, reason)]
    retry: list = field(default_factory=list)  # [(message, reason)]: a temporary error, back in RETRY_AFTER
    put_back: list = field(default_factory=list)  # claimed but never handed to the provider

    @property
    def stop(self):
        return bool(self.retry or self.put_back)


def drain(schema_name, session_id, provider, *, window=None, now=None, fence=None):
    """On the host running the session: claim, send and record its due messages, batch after batch, until none
    is due (or the provider cannot send now). With the host's `fence` (whatsapp.host.leases.Fence) a claim takes
    nothing once the lease moved to another host, and a batch claimed just before is put back unsent if the lease
    moved meanwhile. Returns how many messages were handed to the provider."""
    window = window or SendWindow()
    handed, cleared = 0, False
    try:
        with schema_context(schema_name):
            found = rows.select(WhatsAppSession, "s", "WHERE s.id = %s", [session_id])
            if not found:
                return 0
            session = found[0]
            if provider is not None and not getattr(provider, "is_connected", True):
                # Starting or reconnecting: nothing is claimed (no attempt counted); CONNECTED wakes the drain.
                return 0
            policy = pacing.current_policy()
            lingered = 0.0
            while True:
                claimed = claim(session, policy, now or timezone.now(), window.size(), fence=fence)
                if not claimed:
                    if cleared:
                        return handed
                    if handed and lingered < LINGER_SECONDS:
                        # Busy: messages are coming in one by one. A few milliseconds' wait gathers the next ones
                        # into one claim, with no drain task of their own, instead of a task and a claim each.
                        time.sleep(LINGER_STEP_SECONDS)
                        lingered += LINGER_STEP_SECONDS
                        continue
                    # The wake flag stays set while the drain runs, so commits meanwhile send no task of their
                    # own; once it is cleared, one more look finds what committed before it was.
                    _clear_wake(schema_name, session_id)
                    cleared = True
                    continue
                cleared, lingered = False, 0.0
                assign_ids(provider, claimed)
                if fence is not None and not fence.held():  # paused between the claim and now: not ours any more
                    log.warning("session %s:%s: lease lost mid-drain, %d claimed messages put back unsent",
                                schema_name, session_id, len(claimed))
                    Message.objects.filter(pk__in=[m.pk for m in claimed], status=S.SENDING).update(
                        status=S.QUEUED, attempts=F("attempts") - 1, next_attempt_at=None)
                    return handed
                started = time.monotonic()
                outcome = send_claimed(provider, claimed)
                window.observe(len(outcome.sent) + len(outcome.failed), time.monotonic() - started)
                record(session, outcome, now=now)
                handed += len(outcome.sent) + len(outcome.failed) + len(outcome.retry)
                if outcome.stop:
                    return handed
    finally:
        if not cleared:
            _clear_wake(schema_name, session_id)


def _due(session_id, now):
    return (Q(session_id=session_id, direction=Message.Direction.OUT, status=S.QUEUED)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)))


def claim(session, policy, now, limit, *, fence=None):
    """The session's next due messages, moved to `sending` with their attempt counted, oldest first. With pacing
    off: one statement. With pacing on, each takes its slot; those whose slot is later wait (returned nowhere;
    their pages and the wake at their slot are told here). With a `fence`, only while the host holds the lease."""
    fenced, fence_params = fence.sql() if fence is not None else ("TRUE", [])
    if not policy.enabled:
        table = rows.table(Message)
        claimed = rows.run(Message, (
            f"UPDATE {table} SET status = %s, attempts = attempts + 1, next_attempt_at = %s, paced_until = NULL, "
            f"paced_reason = '' WHERE id IN (SELECT id FROM {table} WHERE session_id = %s AND direction = %s "
            f"AND status = %s AND attempts < %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s) AND {fenced} "
            f"ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {rows.columns(Message, Message._meta.db_table)}"),
            [S.SENDING, now + RETRY_AFTER, session.pk, Message.Direction.OUT, S.QUEUED, max_attempts(), now,
             *fence_params, limit])
        claimed.sort(key=lambda m: m.pk)
        for message in claimed:
            message.session = session
        return claimed
    claimed, waiting = [], []
    schema_name = connection.schema_name
    with transaction.atomic():
        if fence is not None and not fence.held():
            return []
        due = (Message.objects.select_for_update(skip_locked=True).filter(_due(session.pk, now))
               .filter(attempts__lt=max_attempts()).order_by("pk")[:limit])
        for message in due:
            message.session = session
            if message.paced_until is None:  # a slot of its own (one that waited has it already)
                slot = pacing.reserve_slot(session.pk, now, message_id=message.pk)
                if slot > now:
                    message.next_attempt_at = message.paced_until = slot
                    message.paced_reason = ("daily_cap" if pacing.day_start(slot) > pacing.day_start(now)
                                            else "interval")
                    message.save(update_fields=["next_attempt_at", "paced_until", "paced_reason"])
                    waiting.append(message)
                    wait = slot - now
                    if wait <= PACING_COUNTDOWN_MAX:
                        transaction.on_commit(lambda seconds=wait.total_seconds(): wake(
                            schema_name, session.pk, countdown=seconds))
                    continue
            message.status, message.attempts = S.SENDING, message.attempts + 1
            message.next_attempt_at, message.paced_until, message.paced_reason = now + RETRY_AFTER, None, ""
            message.save(update_fields=["status", "attempts", "next_attempt_at", "paced_until", "paced_reason"])
            claimed.append(message)
        if waiting:
            conversations.note_outgoing(waiting)
            messages_changed(waiting, conversations=conversations.of_messages(waiting))
    return claimed


def assign_ids(provider, claimed):
    """When the provider lets the sender choose WhatsApp's id (the simulator; whatsmeow does, neonize 0.5.2 does not
    pass it), store each claimed message's id before it is handed over (one statement): a host killed mid-send
    leaves rows whose fate the next host can look up (settle_in_doubt) and receipts can find. A message that was
    tried before keeps its id."""
    choose = getattr(provider, "new_message_id", None)
    if choose is None:
        return
    fresh = [m for m in claimed if not m.provider_message_id]
    chosen = [(m, choose()) for m in fresh]
    chosen = [(m, i) for m, i in chosen if i]
    if not chosen:
        return
    values = ", ".join(["(%s::bigint, %s::text)"] * len(chosen))
    params = [p for m, i in chosen for p in (m.pk, i)]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {rows.table(Message)} AS m SET provider_message_id = v.pid FROM (VALUES {values}) "
                       f"AS v(id, pid) WHERE m.id = v.id", params)
    for message, message_id in chosen:
        message.provider_message_id = message_id


def send_claimed(provider, claimed):
    """Hand each claimed message to the provider, in order, outside any transaction (with the id chosen for it,
    when the provider takes one)."""
    outcome = Outcome()
    for index, message in enumerate(claimed):
        if provider is None:  # the session stopped on this host since the drain began
            outcome.put_back = claimed[index:]
            break
        try:
            chosen = {"message_id": message.provider_message_id} if message.provider_message_id else {}
            outcome.sent.append((message, provider.send(message.chat_jid, message_types.outgoing(message),
                                                        **chosen)))
        except ProviderError as exc:
            reason = f"{exc.code}: {exc}"
            if exc.code in TEMPORARY_SEND_ERRORS and message.attempts < max_attempts():
                # The connection is down for a moment (reconnecting): this one counts the attempt, the rest of the
                # batch was never tried.
                outcome.retry.append((message, reason))
                outcome.put_back = claimed[index + 1:]
                break
            outcome.failed.append((message, reason))
        except Exception as exc:  # a bug or a crash in the client: WhatsApp's answer is unknown, never resent
            log.exception("sending message %s failed", message.pk)
            outcome.failed.append((message, f"send_error: {exc}"))
    return outcome


def record(session, outcome, *, now=None):
    """What the provider said, in one transaction: sent rows in one statement, then the batch's webhooks, its
    conversations' last message and live updates."""
    now = now or timezone.now()
    with transaction.atomic():
        sent = record_sent(outcome.sent, now=now)
        failed = record_failed(outcome.failed, only_from=S.SENDING)
        for message, reason in outcome.retry:
            # Only while still ours: a host that took the session over may have settled it meanwhile.
            message.status, message.failure_reason = S.QUEUED, reason[:500]
            Message.objects.filter(pk=message.pk, status=S.SENDING).update(status=S.QUEUED,
                                                                           failure_reason=reason[:500])
        if outcome.put_back:
            Message.objects.filter(pk__in=[m.pk for m in outcome.put_back], status=S.SENDING).update(
                status=S.QUEUED, attempts=F("attempts") - 1, next_attempt_at=None)
        conversations.note_outgoing(sent + failed)
        shown = conversations.of_messages(sent + failed)
        tell(session, "message.sent", sent, conversations=shown)
        tell(session, "message.failed", failed, conversations=shown)


def record_sent(pairs, *, now=None):
    """[(message, provider id)] of messages in `sending` → sent, in one statement. Returns the messages that were
    still `sending` (a host that took the session over may have settled the others meanwhile)."""
    if not pairs:
        return []
    now = now or timezone.now()
    values = ", ".join(["(%s::bigint, %s::text)"] * len(pairs))
    params = [S.SENT, now]
    for message, provider_id in pairs:
        params += [message.pk, str(provider_id or "")[:128]]
    params.append(S.SENDING)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {rows.table(Message)} AS m SET status = %s, provider_message_id = v.pid, sent_at = %s, "
            f"next_attempt_at = NULL, failure_reason = '' FROM (VALUES {values}) AS v(id, pid) "
            f"WHERE m.id = v.id AND m.status = %s RETURNING m.id", params)
        changed = {row[0] for row in cursor.fetchall()}
    for message, provider_id in pairs:
        message.status, message.provider_message_id = S.SENT, str(provider_id or "")[:128]
        message.sent_at, message.next_attempt_at, message.failure_reason = now, None, ""
    recorded = [message for message, _ in pairs if message.pk in changed]
    latency.sent(recorded, now)
    return recorded


def record_failed(pairs, *, only_from=None):
    """[(message, reason)] → failed with the reason. Returns the messages changed (tell them: message.failed).
    With `only_from` (a status), a row no longer in it is left alone and not returned."""
    changed = []
    for message, reason in pairs:
        message.status, message.failure_reason, message.next_attempt_at = S.FAILED, str(reason)[:500], None
        message.paced_until, message.paced_reason = None, ""
        fields = {"status": S.FAILED, "failure_reason": message.failure_reason, "next_attempt_at": None,
                  "paced_until": None, "paced_reason": ""}
        found = Message.objects.filter(pk=message.pk)
        if only_from is not None:
            found = found.filter(status=only_from)
        if found.update(**fields):
            changed.append(message)
    return changed


def tell(session, event_type, messages, *, conversations=None):
    """The message.* webhook deliveries and live updates of `messages` (all of `session`), on commit."""
    if not messages:
        return
    messages = list(messages)
    prefetch_related_objects(messages, "automation")  # which rule or bot sent each: one query for the batch
    payloads = [message_payload(message, session.name) for message in messages]
    emit_events(event_type, payloads)
    messages_changed(messages, conversations=conversations, payloads=payloads)


# --- a session taken over ---------------------------------------------------------------------------------------

HOST_LOST = "host_lost"


def host_lost_reason(when):
    return (f"{HOST_LOST}: the session host stopped while sending ({when}); WhatsApp may or may not have received "
            "this message")


def settle_in_doubt(schema_name, session_id, accepted, *, now=None):
    """A host is starting the session: no drain of it runs here, so its `sending` rows were left by a host that
    died (or a drain that crashed). Each is settled at once: `sent` when WhatsApp's side is known to hold its id
    (`accepted(ids)`, the provider's record), else `failed` host_lost — never sent again (no duplicates); a
    receipt that later names it moves it on (apply_receipt). Returns (sent, failed) counts."""
    now = now or timezone.now()
    with schema_context(schema_name):
        left = list(Message.objects.filter(session_id=session_id, direction=Message.Direction.OUT,
                                           status=S.SENDING).select_related("session").order_by("pk"))
        if not left:
            return 0, 0
        ids = [m.provider_message_id for m in left if m.provider_message_id]
        proved = accepted(ids) if ids else set()
        with transaction.atomic():
            sent = record_sent([(m, m.provider_message_id) for m in left if m.provider_message_id in proved],
                               now=now)
            failed = record_failed([(m, host_lost_reason("settled when another host took the session over"))
                                    for m in left if m.provider_message_id not in proved], only_from=S.SENDING)
            conversations.note_outgoing(sent + failed)
            session = left[0].session
            shown = conversations.of_messages(sent + failed)
            tell(session, "message.sent", sent, conversations=shown)
            tell(session, "message.failed", failed, conversations=shown)
    if sent or failed:
        log.info("session %s:%s taken over: %d in-doubt messages proved sent, %d failed host_lost", schema_name,
                 session_id, len(sent), len(failed))
    return len(sent), len(failed)


# --- no host ----------------------------------------------------------------------------------------------------


def count_unhosted(session_id, now=None):
    """No host runs the session: its due messages count an attempt and wait RETRY_AFTER for the sweeper; those
    at the cap fail. In the session's schema."""
    now = now or timezone.now()
    with transaction.atomic():
        Message.objects.filter(_due(session_id, now)).update(attempts=F("attempts") + 1,
                                                             next_attempt_at=now + RETRY_AFTER)
        fail_capped(Message.objects.filter(session_id=session_id))


def fail_capped(messages):
    """Queued messages among `messages` that used every attempt → failed, told. Returns how many."""
    capped = list(messages.filter(direction=Message.Direction.OUT, status=S.QUEUED,
                                  attempts__gte=max_attempts()).select_related("session"))
    fail([(m, f"not_sent: no session host sent it after {m.attempts} attempts") for m in capped])
    return len(capped)


def fail(pairs):
    """[(message with its session loaded, reason)] of any sessions → failed, told (one webhook insert and one
    live update per session), in one transaction."""
    by_session = {}
    for message, reason in pairs:
        by_session.setdefault(message.session_id, (message.session, []))[1].append((message, reason))
    with transaction.atomic():
        for session, failing in by_session.values():
            tell(session, "message.failed", record_failed(failing))
