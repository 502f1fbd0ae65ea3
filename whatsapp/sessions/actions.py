"""State changes of WhatsApp sessions, called by the API and pages with the tenant's schema active.

The session host does the talking to WhatsApp; these only record what the tenant wants (should_run) and
hand the session to a host through its lease.
"""
import re

from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import tenant_context

from audit import actions as audit
from billing import entitlements
from core.errors import DomainError
from core.phones import normalize_phone
from whatsapp.host import commands, leases
from whatsapp.host.models import SessionLease

from . import events
from .errors import SessionError
from .models import SessionActivity, WhatsAppSession

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
NAME_RE = re.compile(NAME_PATTERN)


def _announce_on_commit(session_id):
    """Open pages learn about changes made here; changes made on a host are announced by the host."""
    schema_name = connection.schema_name
    transaction.on_commit(lambda: events.announce(schema_name, session_id))


def count_sessions(tenant):
    """Plan usage counter for max_sessions (registered with billing.entitlements by WhatsappConfig.ready)."""
    with tenant_context(tenant):
        return WhatsAppSession.objects.count()


def _global_limit_reached():
    limit = settings.WHATSAPP_MAX_SESSIONS
    return limit >= 0 and SessionLease.objects.count() >= limit


def create_session(tenant, *, acting_user, name, label=""):
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise DomainError(SessionError.INVALID_NAME, "Session names use 1–64 letters, digits, '-' or '_'.")
    entitlements.require_write(tenant)
    entitlements.require_within_limit(tenant, "max_sessions")
    with transaction.atomic():
        if WhatsAppSession.objects.filter(name=name).exists():
            raise DomainError(SessionError.DUPLICATE_NAME, f"A session named '{name}' already exists.")
        session = WhatsAppSession.objects.create(name=name, label=(label or "").strip()[:120])
        SessionActivity.objects.create(session=session, kind=SessionActivity.Kind.CREATED,
                                       message=_by(acting_user, "Created"))
        audit.record("whatsapp.session_created", actor=acting_user, target=session, after={"name": name},
                     tenant=tenant)
        _announce_on_commit(session.pk)
    return session


def _by(acting_user, verb):
    return f"{verb} by {acting_user.email}" if getattr(acting_user, "email", None) else verb


def _command_on_commit(session, action, **kwargs):
    """Queue `action` for the host running the session once the transaction commits (nothing is asked of a host
    for a change that rolled back)."""
    schema_name, session_id = connection.schema_name, session.pk
    transaction.on_commit(lambda: commands.send(schema_name, session_id, action, **kwargs))


def start_session(tenant, session, *, acting_user, by_qr=False):
    """The tenant wants it running: a host claims its lease within a heartbeat and starts the client.
    With `by_qr`, a session last linked by phone number shows a QR code this time (the host pairs by code
    whenever pairing_phone is set)."""
    entitlements.require_write(tenant)
    if session.should_run and session.status not in (WhatsAppSession.Status.ERROR,
                                                      WhatsAppSession.Status.LOGGED_OUT,
                                                      WhatsAppSession.Status.STOPPED):
        raise DomainError(SessionError.ALREADY_RUNNING, "This session is already running.",
                          {"status": session.status})
    if _global_limit_reached():
        raise DomainError(SessionError.CAPACITY_REACHED,
                          "This installation runs its maximum number of sessions; try later "
                          "or ask the operator to raise WHATSAPP_MAX_SESSIONS.")
    with transaction.atomic():
        WhatsAppSession.objects.filter(pk=session.pk).update(
            should_run=True, status=WhatsAppSession.Status.STARTING, status_detail="Waiting for a session host…",
            **({"pairing_phone": ""} if by_qr else {}))
        audit.record("whatsapp.session_started", actor=acting_user, target=session,
                     before={"status": session.status}, after={"status": WhatsAppSession.Status.STARTING},
                     tenant=tenant)
        schema_name, session_id = connection.schema_name, session.pk
        transaction.on_commit(lambda: leases.want_running(schema_name, session_id))
        transaction.on_commit(commands.wake_hosts)
        _announce_on_commit(session_id)
    session.refresh_from_db()
    return session


def stop_session(tenant, session, *, acting_user):
    with transaction.atomic():
        WhatsAppSession.objects.filter(pk=session.pk).update(
            should_run=False, status=WhatsAppSession.Status.STOPPED, status_detail="Stopped.",
            qr_code="", qr_expires_at=None, pair_code="")
        SessionActivity.objects.create(session=session, kind=SessionActivity.Kind.STOPPED,
                                       message=_by(acting_user, "Stopped"))
        audit.record("whatsapp.session_stopped", actor=acting_user, target=session,
                     before={"status": session.status}, after={"status": WhatsAppSession.Status.STOPPED},
                     tenant=tenant)
        schema_name, session_id = connection.schema_name, session.pk
        transaction.on_commit(lambda: leases.want_stopped(schema_name, session_id))
        _announce_on_commit(session_id)
    session.refresh_from_db()
    return session


def _running_on_a_host(session):
    return commands.holder(connection.schema_name, session.pk) is not None


def restart_session(tenant, session, *, acting_user):
    """Restart the client where it runs; a session that is not running is started."""
    entitlements.require_write(tenant)
    if not _running_on_a_host(session):
        if session.should_run:  # wanted but not (yet) claimed: make sure a host looks now
            commands.wake_hosts()
            return session
        return start_session(tenant, session, acting_user=acting_user)
    with transaction.atomic():
        SessionActivity.objects.create(session=session, kind=SessionActivity.Kind.RESTARTED,
                                       message=_by(acting_user, "Restart requested"))
        audit.record("whatsapp.session_restarted", actor=acting_user, target=session, tenant=tenant)
        _command_on_commit(session, "restart")
    return session


def set_show_contact_typing(tenant, session, *, on, acting_user):
    """Show when contacts type (marks this number online to everyone): saved, audited, and told to the host
    running the session at once (otherwise at its next start)."""
    entitlements.require_write(tenant)
    on = bool(on)
    if session.show_contact_typing == on:
        return session
    with transaction.atomic():
        WhatsAppSession.objects.filter(pk=session.pk).update(show_contact_typing=on)
        audit.record("whatsapp.session_contact_typing_changed", actor=acting_user, target=session, tenant=tenant,
                     before={"show_contact_typing": session.show_contact_typing}, after={"show_contact_typing": on})
        session.show_contact_typing = on
        if _running_on_a_host(session):
            _command_on_commit(session, "set_available", available=on)
    return session


def link_with_phone(tenant, session, *, acting_user, phone):
    """Pair by an 8-character code typed on the phone instead of scanning a QR code."""
    phone = normalize_phone(phone, code=SessionError.INVALID_PHONE)
    entitlements.require_write(tenant)
    if session.is_linked:
        raise DomainError(SessionError.ALREADY_LINKED,
                          "This session is already linked to a phone; unlink it first (Unlink phone).")
    with transaction.atomic():
        WhatsAppSession.objects.filter(pk=session.pk).update(pairing_phone=phone)
        session.pairing_phone = phone
        audit.record("whatsapp.session_pairing_requested", actor=acting_user, target=session,
                     after={"pairing_phone": phone}, tenant=tenant)
        if _running_on_a_host(session):
            _command_on_commit(session, "pairing_code", phone=phone)
            return session
        if session.should_run:
            WhatsAppSession.objects.filter(pk=session.pk).update(should_run=False)
            session.should_run = False
        return start_session(tenant, session, acting_user=acting_user)


def logout_session(tenant, session, *, acting_user):
    """Unlink the device on WhatsApp's side. A session that is not running is forgotten here; the phone then
    shows the device until WhatsApp drops it (or the user removes it under Linked devices)."""
    with transaction.atomic():
        audit.record("whatsapp.session_logged_out", actor=acting_user, target=session,
                     before={"phone": session.phone, "status": session.status}, tenant=tenant)
        if _running_on_a_host(session):
            _command_on_commit(session, "logout")
            return session
        WhatsAppSession.objects.filter(pk=session.pk).update(
            should_run=False, status=WhatsAppSession.Status.LOGGED_OUT, jid_user="", jid_device=0,
            qr_code="", qr_expires_at=None, pair_code="", pairing_phone="",
            status_detail="Unlinked from the phone. Start the session and scan again to link a phone.")
        SessionActivity.objects.create(session=session, kind=SessionActivity.Kind.LOGGED_OUT,
                                       message=_by(acting_user, "Phone unlinked"))
        schema_name, session_id = connection.schema_name, session.pk
        transaction.on_commit(lambda: leases.want_stopped(schema_name, session_id))
        _announce_on_commit(session_id)
    session.refresh_from_db()
    return session


def delete_session(tenant, session, *, acting_user):
    """Delete the session and its activity; a running, linked client unlinks its phone first (on commit, before its
    lease goes)."""
    with transaction.atomic():
        schema_name, session_id = connection.schema_name, session.pk
        audit.record("whatsapp.session_deleted", actor=acting_user, target=session,
                     before={"name": session.name, "phone": session.phone}, tenant=tenant)
        if _running_on_a_host(session) and session.is_linked:
            _command_on_commit(session, "logout")
        name = session.name
        session.delete()
        transaction.on_commit(lambda: leases.want_stopped(schema_name, session_id))
        transaction.on_commit(lambda: events.announce_deleted(schema_name, session_id, name))


def stop_for_workspace_deletion(sender, *, tenant, acting_user, **kwargs):
    """The workspace is to be deleted (tenants.signals.workspace_deletion_scheduled): every session stops now, and a
    linked one unlinks its phone first, so the phone no longer lists a device of a workspace on its way out."""
    with tenant_context(tenant):
        for session in WhatsAppSession.objects.order_by("pk"):
            if session.is_linked:
                logout_session(tenant, session, acting_user=acting_user)
                session.refresh_from_db()
            if session.should_run:
                stop_session(tenant, session, acting_user=acting_user)
