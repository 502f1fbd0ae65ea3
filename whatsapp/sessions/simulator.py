"""What WhatsApp's side does on demand while WHATSAPP_PROVIDER=simulator (demos, tests, benchmarks): a scan, an
inbound message, a dropped connection, a logout on the phone. The API's test helpers and the session page ask
here, so both refuse the same things at once rather than the host failing later where nobody sees it. These
change nothing of ours: the host runs the command and reports what happened as WhatsApp would."""
from django.conf import settings
from django.db import connection

from core.errors import CommonError, DomainError
from core.phones import normalize_phone
from whatsapp.host import commands
from whatsapp.providers.simulator import chat_presence_seen

from .errors import SessionError
from .models import WhatsAppSession

S = WhatsAppSession.Status


def active():
    """Decided per call, so a settings change applies at once."""
    return settings.WHATSAPP_PROVIDER == "simulator"


def _refuse_unless(condition, code, message, session):
    if not condition:
        raise DomainError(code, message, {"status": session.status})


def _require_running(session):
    if not active():
        raise DomainError(CommonError.NOT_FOUND, "Simulated WhatsApp actions exist only with the simulator.")
    if commands.holder(connection.schema_name, session.pk) is None:
        raise DomainError(SessionError.SESSION_NOT_RUNNING, "This session is not running on any host; start it first.",
                          {"status": session.status})


def _send(session, command, **kwargs):
    commands.send(connection.schema_name, session.pk, command, **kwargs)


def scan(session, *, phone, push_name=""):
    """The phone scans the QR code (or enters the pairing code): the session links to `phone`."""
    phone = normalize_phone(phone, code=SessionError.INVALID_PHONE)
    _require_running(session)
    _refuse_unless(session.status in (S.QR, S.PAIRING), SessionError.NOT_PAIRING,
                   "No QR code or pairing code is waiting for a scan.", session)
    _refuse_unless(session.status != S.PAIRING or not session.pairing_phone or phone == session.pairing_phone,
                   SessionError.WRONG_PHONE, f"The pairing code was issued for {session.pairing_phone}.", session)
    _send(session, "simulate_scan", phone=phone, push_name=push_name)
    return phone


def inbound(session, **message):
    """A contact sends the linked number `message` (from_phone, type, text, media …, checked by the caller)."""
    _require_running(session)
    _refuse_unless(session.status == S.CONNECTED, SessionError.NOT_CONNECTED, "The session is not connected.",
                   session)
    _send(session, "simulate_inbound", **message)


def disconnect(session):
    """The connection drops; the session reconnects by itself."""
    _require_running(session)
    _refuse_unless(session.status == S.CONNECTED, SessionError.NOT_CONNECTED, "The session is not connected.",
                   session)
    _send(session, "simulate_disconnect")


def logout(session):
    """The device is removed under Linked devices on the phone: the session is logged out."""
    _require_running(session)
    _refuse_unless(session.is_linked, SessionError.NOT_LINKED, "The session is not linked to a phone.", session)
    _send(session, "simulate_logout")


def contact_typing(session, *, from_phone, state):
    """A contact types (or stops) in their chat with the number: heard only with show_contact_typing on."""
    _require_running(session)
    _refuse_unless(session.status == S.CONNECTED, SessionError.NOT_CONNECTED, "The session is not connected.",
                   session)
    _send(session, "simulate_contact_typing", from_phone=from_phone, state=state)


def chat_presence(session):
    """What the contacts' phones show of this number's typing: [{chat, state, at, typing}] (the simulator's
    record on WhatsApp's side, in the shared store directory), latest first."""
    if not active():
        raise DomainError(CommonError.NOT_FOUND, "Simulated WhatsApp actions exist only with the simulator.")
    return chat_presence_seen(settings.WHATSAPP_STORE_DIR, f"{connection.schema_name}:{session.pk}")
