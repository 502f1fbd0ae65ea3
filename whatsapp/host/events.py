"""Turn provider events into database changes, activity rows and live updates. Runs on the host's publisher
thread only (never on a provider's callback thread), inside the session's tenant schema."""
import logging
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from config import rows
from whatsapp.models import SessionActivity, WhatsAppSession
from whatsapp.providers.base import EventKind

from . import leases

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
    from whatsapp.webhooks.actions import emit_event

    emit_event(event_type, {"session": webhook_session(session), **fields})


def _connected_text(session):
    who = f"+{session.phone.lstrip('+')}" if session.phone else "your phone"
    return f"Connected as {who}" + (f" ({session.push_name})" if session.push_name else "")


@dataclass(frozen=True)
class Applied:
    payload: dict | None  # the session's new state, when it changed (and was published)
    stop: bool = False  # the host should stop the provider
    early_receipt_ids: tuple = ()  # receipt ids that matched no message while a send was in flight


# last_activity_at moves at most this often for message traffic: a busy number does not rewrite (and lock) its
# session row, or push a session page update, for every message and receipt.
ACTIVITY_EVERY = timedelta(seconds=30)


def apply(event):
    """Apply one ProviderEvent. Status events lock and update the session row and publish it; messages and
    receipts take apply_traffic's lighter path."""
    if event.kind in (EventKind.MESSAGE, EventKind.RECEIPT):
        return apply_traffic(event)
    schema_name, session_id = event.session_key.split(":", 1)
    with schema_context(schema_name), transaction.atomic():
        session = WhatsAppSession.objects.select_for_update().filter(pk=int(session_id)).first()
        if session is None:  # deleted while running
            return Applied(None, stop=True)
        stop = _apply_to(session, event)
        session.save()
        payload = session_payload(session)
        session_id_int, schema = session.pk, schema_name
        if stop:
            transaction.on_commit(lambda: leases.want_stopped(schema, session_id_int))
        elif event.kind == EventKind.CONNECTED:  # what waited for the connection (put back, swept) goes now
            transaction.on_commit(lambda: _wake_sender(schema, session_id_int))
    _publish(schema_name, int(session_id), payload)
    return Applied(payload, stop=stop)


def apply_traffic(event, now=None):
    """An inbound message or a receipt. The session's state does not change, so its row is neither locked nor
    saved (only last_activity_at, at most every ACTIVITY_EVERY, by a conditional UPDATE) and the session pages
    hear of it only then. Receipt ids that found no message while one of the session's messages is `sending`
    are returned as early: the provider's id is recorded when that send commits, so the host tries them again."""
    from whatsapp import messaging

    schema_name, session_id = event.session_key.split(":", 1)
    now = now or timezone.now()
    early = ()
    with schema_context(schema_name), transaction.atomic():
        found = rows.select(WhatsAppSession, "s", "WHERE s.id = %s", [int(session_id)])  # on every receipt
        if not found:  # deleted while running
            return Applied(None, stop=True)
        session = found[0]
        recent = session.last_activity_at is not None and session.last_activity_at > now - ACTIVITY_EVERY
        bumped = not recent and WhatsAppSession.objects.filter(pk=session.pk).exclude(
            last_activity_at__gt=now - ACTIVITY_EVERY).update(last_activity_at=now)
        if event.kind == EventKind.MESSAGE:
            messaging.store_inbound(session, event.data)
        else:
            early = tuple(messaging.apply_receipt(session, event.data).early_ids)
        if bumped:
            session.last_activity_at = now
            payload = session_payload(session)
    if bumped:
        _publish(schema_name, int(session_id), payload)
        return Applied(payload, early_receipt_ids=early)
    return Applied(None, early_receipt_ids=early)


def _wake_sender(schema_name, session_id):
    from whatsapp import sending

    sending.wake(schema_name, session_id, force=True)


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
