"""A session's state as WhatsApp reports it: provider events turned into the session row, activity rows, session.*
webhooks and live updates (registered with the session host by WhatsappConfig.ready()). Runs on the host's
publisher thread only (never on a provider's callback thread), inside the session's tenant schema."""
import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from core import rows
from whatsapp.host import leases
from whatsapp.host.handlers import Applied, Start
from whatsapp.providers.base import DeviceIdentity, EventKind
from whatsapp.webhooks.actions import emit_event

from .models import SessionActivity, WhatsAppSession

log = logging.getLogger(__name__)
S = WhatsAppSession.Status
A = SessionActivity.Kind


def session_group(schema_name, session_id):
    return f"t.{schema_name}.session.{session_id}"


def sessions_group(schema_name):
    return f"t.{schema_name}.sessions"


def session_payload(session):
    return {
        "id": session.pk,
        "name": session.name,
        "label": session.label,
        "status": session.status,
        "status_display": session.get_status_display(),
        "status_detail": session.status_detail,
        "phone": session.phone,
        "push_name": session.push_name,
        "qr_code": session.qr_code,
        "qr_expires_at": session.qr_expires_at.isoformat() if session.qr_expires_at else None,
        "pair_code": session.pair_code,
        "last_activity_at": session.last_activity_at.isoformat() if session.last_activity_at else None,
    }


# What links a phone to the session: a QR code or pairing code lets whoever holds it put their WhatsApp account
# behind the workspace's session. Only roles that manage sessions (core.permissions: sessions.manage) receive them;
# the others see the state change (status "qr", "pairing") without the code.
LINKING_FIELDS = {"qr_code": "", "qr_expires_at": None, "pair_code": ""}


def without_linking_codes(payload):
    """The payload with the QR and pairing codes blanked, for a viewer or agent."""
    return {**payload, **{field: blank for field, blank in LINKING_FIELDS.items() if field in payload}}


def webhook_session(session):
    """The session as it appears in the data of session.* webhook events: what a receiver needs to route the event,
    never the QR code or pairing code (session.qr carries its code separately)."""
    return {
        "id": session.pk,
        "name": session.name,
        "label": session.label,
        "status": session.status,
        "status_detail": session.status_detail,
        "phone": session.phone,
        "push_name": session.push_name,
    }


def _emit(session, event_type, **fields):
    """Store the session.* webhook deliveries in apply()'s transaction: they go out only if the new state commits."""
    emit_event(event_type, {"session": webhook_session(session), **fields})


def _connected_text(session):
    who = f"+{session.phone.lstrip('+')}" if session.phone else "your phone"
    return f"Connected as {who}" + (f" ({session.push_name})" if session.push_name else "")


# last_activity_at moves at most this often for message traffic: a busy number does not rewrite (and lock) its
# session row, or push a session page update, for every message and receipt.
ACTIVITY_EVERY = timedelta(seconds=30)


# Status events: what the session host hands this module (the rest, messages and receipts, go to messaging).
STATUS_KINDS = (EventKind.QR, EventKind.QR_EXPIRED, EventKind.PAIR_CODE, EventKind.PAIRED, EventKind.CONNECTED,
                EventKind.DISCONNECTED, EventKind.LOGGED_OUT, EventKind.ERROR)


# A session in one of these is not running: a host starting it starts it, rather than restarting it.
NOT_RUNNING = (S.NEW, S.STARTING, S.STOPPED, S.LOGGED_OUT, S.ERROR)


def starting(schema_name, session_id, host_id):
    """A host is about to start the session's client: how to start it (handlers.Start), or None when the session
    is gone or no longer wanted. The row says so at once; the tenant sees "Starting…" until WhatsApp answers."""
    with schema_context(schema_name), transaction.atomic():
        session = WhatsAppSession.objects.filter(pk=session_id).first()
        if session is None or not session.should_run:
            return None
        identity = DeviceIdentity(session.jid_user, session.jid_device) if session.jid_user else None
        # A client that was running (or trying to) is restarted: by the tenant, the watchdog or another host taking
        # over. Which host runs it is for the operators' logs, not the tenant's activity.
        restart = session.status not in NOT_RUNNING
        log.info("session %s:%s %s on host %s", schema_name, session_id, "restarting" if restart else "starting",
                 host_id)
        if identity and session.status in (S.CONNECTED, S.RECONNECTING):
            # Taken over from a host that died, restarted by the watchdog or a person: WhatsApp still holds the
            # linked device and what was sent to it; the number is reconnecting (sends wait in the queue).
            status, detail = S.RECONNECTING, session.status_detail if session.status == S.RECONNECTING else \
                "Reconnecting the linked device…"
        else:
            status, detail = S.STARTING, "Resuming the linked device…" if identity else "Starting…"
        WhatsAppSession.objects.filter(pk=session.pk).update(status=status, status_detail=detail)
        _activity(session, A.RESTARTED if restart else A.STARTED,
                  "Resuming the linked device: no scan needed." if identity else "")
    return Start(identity=identity, pairing_phone=session.pairing_phone or None,
                 available=session.show_contact_typing)


ORPHANED_DETAIL = "The server running this number stopped answering; another one is taking it over."


def mark_orphaned(now=None):
    """Sessions whose host's lease expired (the host died or hangs: its writes no longer land, leases.Fence) while
    their row still says connected: reconnecting, with why, published to open pages. The host that takes one over
    keeps it reconnecting until WhatsApp answers (starting). Returns how many were marked."""
    now = now or timezone.now()
    expired = {}
    for schema_name, session_id in leases.expired(now):
        expired.setdefault(schema_name, []).append(session_id)
    marked = 0
    for schema_name, ids in expired.items():
        with schema_context(schema_name):
            with transaction.atomic():
                found = list(WhatsAppSession.objects.select_for_update().filter(pk__in=ids, status=S.CONNECTED))
                for session in found:
                    session.status, session.status_detail = S.RECONNECTING, ORPHANED_DETAIL
                    session.save(update_fields=["status", "status_detail"])
                    _activity(session, A.RECONNECTING, ORPHANED_DETAIL)
            for session in found:
                _publish(schema_name, session.pk, session_payload(session))
        marked += len(found)
    return marked


def apply(event):
    """Apply one status event: lock and update the session row, publish it."""
    schema_name, session_id = event.session_key.split(":", 1)
    with schema_context(schema_name), transaction.atomic():
        session = WhatsAppSession.objects.select_for_update().filter(pk=int(session_id)).first()
        if session is None:  # deleted while running
            return Applied(None, stop=True)
        stop = _apply_to(session, event)
        session.save()
        payload = session_payload(session)
        if stop:
            session_id_int, schema = session.pk, schema_name
            transaction.on_commit(lambda: leases.want_stopped(schema, session_id_int))
    _publish(schema_name, int(session_id), payload)
    return Applied(payload, stop=stop)


def touch(session_id, now):
    """For message traffic, in the caller's transaction: the session (None if deleted) and whether its
    last_activity_at moved (at most every ACTIVITY_EVERY, by a conditional UPDATE: a busy number neither rewrites
    nor locks its row for every message and receipt). When it moved, the caller publishes the session."""
    found = rows.select(WhatsAppSession, "s", "WHERE s.id = %s", [session_id])  # on every receipt
    if not found:
        return None, False
    session = found[0]
    recent = session.last_activity_at is not None and session.last_activity_at > now - ACTIVITY_EVERY
    bumped = not recent and WhatsAppSession.objects.filter(pk=session.pk).exclude(
        last_activity_at__gt=now - ACTIVITY_EVERY).update(last_activity_at=now)
    if bumped:
        session.last_activity_at = now
    return session, bool(bumped)


def publish_state(schema_name, session):
    _publish(schema_name, session.pk, session_payload(session))


def _activity(session, kind, message=""):
    SessionActivity.objects.create(session=session, kind=kind, message=message[:500])


def _apply_to(session, event):
    """Mutates `session` and writes activity. Returns True when the host should stop the provider."""
    data, now = event.data, timezone.now()
    kind = event.kind
    if kind == EventKind.QR:
        first = session.status != S.QR
        code = data.get("code", "")
        fresh = first or code != session.qr_code
        session.status, session.qr_code = S.QR, code
        session.qr_expires_at = now + timedelta(seconds=data.get("expires_in") or 20)
        session.status_detail = "Scan the QR code with WhatsApp on your phone: Settings → Linked devices."
        if first:
            _activity(session, A.QR_ISSUED, "QR code shown")
        if fresh:  # every rotation is a new code a receiver may want to show; a repeated event is not
            _emit(session, "session.qr", qr=code, expires_at=session.qr_expires_at,
                  attempt=data.get("attempt"), max_attempts=data.get("max_attempts"))
    elif kind == EventKind.QR_EXPIRED:
        session.status, session.qr_code, session.qr_expires_at = S.STOPPED, "", None
        session.should_run = False
        session.status_detail = "The QR code expired without a scan. Restart the session to get a new one."
        _activity(session, A.STOPPED, "QR expired after the maximum number of codes")
        return True
    elif kind == EventKind.PAIR_CODE:
        session.status, session.pair_code = S.PAIRING, data.get("code", "")
        session.status_detail = ("On your phone: WhatsApp → Linked devices → Link with phone number, "
                                 "then type this code.")
        _activity(session, A.PAIR_CODE_ISSUED, f"Pairing code for {data.get('phone', 'your number')}")
    elif kind == EventKind.PAIRED:
        session.jid_user = str(data.get("jid_user", ""))[:64]
        session.jid_device = int(data.get("jid_device") or 0)
        session.phone = (data.get("phone") or session.phone)[:20]
        session.push_name = (data.get("push_name") or session.push_name)[:120]
    elif kind == EventKind.CONNECTED:
        was_connected = session.status == S.CONNECTED
        session.status = S.CONNECTED
        session.phone = (data.get("phone") or session.phone)[:20]
        session.push_name = (data.get("push_name") or session.push_name)[:120]
        session.qr_code, session.qr_expires_at, session.pair_code = "", None, ""
        session.connected_at = session.last_activity_at = now
        session.status_detail = _connected_text(session)
        # pacing's warm-up counts the number's days from its first connection
        session.linked_at = session.linked_at or now
        _activity(session, A.CONNECTED, session.status_detail)
        if not was_connected:
            _emit(session, "session.connected", phone=session.phone, push_name=session.push_name)
    elif kind == EventKind.DISCONNECTED:
        before = session.status
        if data.get("will_retry"):
            session.status = S.RECONNECTING
            retry = data.get("retry_in")
            session.status_detail = f"{data.get('reason') or 'Connection lost'}, retrying" + (
                f" in {int(retry)} s" if retry else "") + "."
            _activity(session, A.RECONNECTING, session.status_detail)
        else:
            session.status = S.DISCONNECTED
            session.status_detail = f"{data.get('reason') or 'Disconnected'}. Restart the session to reconnect."
            _activity(session, A.DISCONNECTED, session.status_detail)
        # Each failed reconnect attempt reports again; receivers hear of the drop once, and again if it gives up.
        if session.status != before:
            _emit(session, "session.disconnected", reason=data.get("reason") or "",
                  will_retry=bool(data.get("will_retry")))
    elif kind == EventKind.LOGGED_OUT:
        was_logged_out = session.status == S.LOGGED_OUT
        session.status, session.should_run = S.LOGGED_OUT, False
        session.jid_user, session.jid_device = "", 0
        session.qr_code, session.qr_expires_at, session.pair_code = "", None, ""
        session.status_detail = (f"{data.get('reason') or 'Logged out'}. The phone no longer lists this device; "
                                 "start the session and scan again to relink.")
        _activity(session, A.LOGGED_OUT, data.get("reason") or "Logged out")
        if not was_logged_out:
            _emit(session, "session.logged_out", reason=data.get("reason") or "")
        return True
    elif kind == EventKind.ERROR:
        session.status_detail = str(data.get("message") or data.get("code") or "Unknown error")[:500]
        _activity(session, A.ERROR, f"{data.get('code', 'error')}: {session.status_detail}")
        if data.get("fatal"):
            session.status, session.should_run = S.ERROR, False
            return True
    return False


def publish(schema_name, session_id, message):
    """group_send one message to the session's page and to its tenant's session list."""
    layer = get_channel_layer()

    async def send():
        await layer.group_send(session_group(schema_name, session_id), message)
        await layer.group_send(sessions_group(schema_name), message)

    try:
        async_to_sync(send)()
    except Exception:  # live pages catch up on reconnect; the database already has the truth
        log.warning("live update for %s:%s failed", schema_name, session_id, exc_info=True)


def _publish(schema_name, session_id, payload):
    publish(schema_name, session_id, {"type": "session.update", "data": payload})


def announce(schema_name, session_id):
    """Tell open pages the session's current state (for changes made by actions, outside a host)."""
    with schema_context(schema_name):
        session = WhatsAppSession.objects.filter(pk=session_id).first()
        payload = session_payload(session) if session else None
    if payload is not None:
        _publish(schema_name, session_id, payload)


def announce_deleted(schema_name, session_id, name):
    publish(schema_name, session_id, {"type": "session.deleted", "data": {"id": session_id, "name": name}})
