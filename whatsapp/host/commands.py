"""Reaching the session host from web and workers. Every host consumes the shared `whatsapp` queue (wake-ups)
and its own `whatsapp.host.<host id>` queue (commands for the sessions it runs)."""
from django.utils import timezone

from core.errors import DomainError

from .errors import HostError
from .models import SessionLease
from .queues import SHARED_QUEUE, host_queue
from .tasks import session_command, sync_now

ACTIONS = {"drain", "restart", "logout", "pairing_code", "simulate_scan", "simulate_inbound", "simulate_disconnect",
           "simulate_logout", "sync_contacts", "chat_presence",
           "set_available", "simulate_contact_typing"}


def wake_hosts():
    """Ask a host to claim free leases now instead of at its next heartbeat (a session was just started)."""
    sync_now.apply_async(queue=SHARED_QUEUE)


def holder(schema_name, session_id):
    lease = SessionLease.objects.filter(schema_name=schema_name, session_id=session_id).first()
    if lease is None or not lease.host_id or lease.lease_expires_at is None or lease.lease_expires_at < timezone.now():
        return None
    return lease.host_id


def send(schema_name, session_id, action, **kwargs):
    """Queue `action` for the host that runs this session. 409 session_not_running if none does."""
    assert action in ACTIONS, action
    host_id = holder(schema_name, session_id)
    if host_id is None:
        raise DomainError(HostError.SESSION_NOT_RUNNING, "This session is not running on any host; start it first.")
    session_command.apply_async(args=[f"{schema_name}:{session_id}", action, kwargs], queue=host_queue(host_id))
