"""State changes of WhatsApp sessions, called by the API and pages with the tenant's schema active.

The session host does the talking to WhatsApp; these only record what the tenant wants (should_run) and
hand the session to a host through its lease.
"""
import re

from django.conf import settings
from django.db import connection, transaction

from accounts import audit
from billing import entitlements
from config.api import ApiError

from .host import commands, leases
from .models import SessionActivity, WhatsAppSession

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def count_sessions(tenant):
    """Plan usage counter for max_sessions (registered with billing.entitlements by WhatsappConfig.ready)."""
    from django_tenants.utils import tenant_context

    with tenant_context(tenant):
        return WhatsAppSession.objects.count()


def _global_limit_reached():
    from .host.models import SessionLease

    limit = settings.WHATSAPP_MAX_SESSIONS
    return limit >= 0 and SessionLease.objects.count() >= limit


def create_session(tenant, *, acting_user, name, label=""):
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ApiError(400, "invalid_name", "Session names use 1–64 letters, digits, '-' or '_'.")
    entitlements.require_write(tenant)
    entitlements.require_within_limit(tenant, "max_sessions")
    with transaction.atomic():
        if WhatsAppSession.objects.filter(name=name).exists():
            raise ApiError(409, "duplicate_name", f"A session named '{name}' already exists.")
        session = WhatsAppSession.objects.create(name=name, label=(label or "").strip()[:120])
        SessionActivity.objects.create(session=session, kind=SessionActivity.Kind.CREATED,
                                       message=f"Created by {acting_user.email}" if acting_user else "Created")
        audit.record("whatsapp.session_created", actor=acting_user, target=session, after={"name": name},
                     tenant=tenant)
    return session


def start_session(tenant, session, *, acting_user):
    """The tenant wants it running: a host claims its lease within a heartbeat and starts the client."""
    entitlements.require_write(tenant)
    if session.should_run and session.status not in (WhatsAppSession.Status.ERROR,
                                                      WhatsAppSession.Status.LOGGED_OUT,
                                                      WhatsAppSession.Status.STOPPED):
        raise ApiError(409, "already_running", "This session is already running.", {"status": session.status})
    if _global_limit_reached():
        raise ApiError(503, "capacity_reached", "This installation runs its maximum number of sessions; try later "
                       "or ask the operator to raise WHATSAPP_MAX_SESSIONS.")
    with transaction.atomic():
        WhatsAppSession.objects.filter(pk=session.pk).update(
            should_run=True, status=WhatsAppSession.Status.STARTING, status_detail="Waiting for a session host…")
        schema_name, session_id = connection.schema_name, session.pk
        transaction.on_commit(lambda: leases.want_running(schema_name, session_id))
        transaction.on_commit(commands.wake_hosts)
    session.refresh_from_db()
    return session


def stop_session(tenant, session, *, acting_user):
    with transaction.atomic():
        WhatsAppSession.objects.filter(pk=session.pk).update(
            should_run=False, status=WhatsAppSession.Status.STOPPED, status_detail="Stopped.",
            qr_code="", qr_expires_at=None, pair_code="")
        SessionActivity.objects.create(session=session, kind=SessionActivity.Kind.STOPPED,
                                       message=f"Stopped by {acting_user.email}" if acting_user else "Stopped")
        schema_name, session_id = connection.schema_name, session.pk
        transaction.on_commit(lambda: leases.want_stopped(schema_name, session_id))
    session.refresh_from_db()
    return session
