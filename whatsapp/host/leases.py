"""Leases: with several `whatsapp` hosts, each session runs on exactly one of them.

A host claims free or expired leases (FOR UPDATE SKIP LOCKED, so two hosts never take the same row), renews
all of its leases every heartbeat, and drops the sessions whose lease it no longer holds. A host that dies
stops renewing; once its leases expire, the others claim them. With LEASE_TTL 45 s and a heartbeat every
15 s, a dead host's sessions are running elsewhere within a minute.
"""
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from .models import SessionLease

LEASE_TTL = timedelta(seconds=45)
HEARTBEAT_INTERVAL = timedelta(seconds=15)

_TABLE = SessionLease._meta.db_table


def want_running(schema_name, session_id):
    """The session should run somewhere: make sure it has a lease row (free until a host claims it)."""
    SessionLease.objects.get_or_create(schema_name=schema_name, session_id=session_id)


def want_stopped(schema_name, session_id):
    SessionLease.objects.filter(schema_name=schema_name, session_id=session_id).delete()


def claim(host_id, *, limit=50, now=None):
    """Take up to `limit` sessions that nobody holds (or whose holder's lease expired). Returns their keys."""
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {_TABLE} SET host_id = %s, lease_expires_at = %s
            WHERE id IN (
                SELECT id FROM {_TABLE}
                WHERE host_id = '' OR lease_expires_at IS NULL OR lease_expires_at < %s
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            RETURNING schema_name, session_id
            """,
            [host_id, now + LEASE_TTL, now, limit],
        )
        return sorted(f"{schema}:{session_id}" for schema, session_id in cursor.fetchall())


def renew(host_id, *, now=None):
    """Extend every lease this host still holds. Returns the keys it holds; any session the host runs that is
    not in the answer was taken over (or stopped) and must be stopped here."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TABLE} SET lease_expires_at = %s WHERE host_id = %s AND lease_expires_at >= %s "
            "RETURNING schema_name, session_id",
            [now + LEASE_TTL, host_id, now],
        )
        return sorted(f"{schema}:{session_id}" for schema, session_id in cursor.fetchall())


def release(host_id, keys=None):
    """A host shutting down cleanly frees its leases at once, so others need not wait for them to expire."""
    leases = SessionLease.objects.filter(host_id=host_id)
    if keys is not None:
        pairs = [key.split(":", 1) for key in keys]
        if not pairs:
            return 0
        from django.db.models import Q

        match = Q()
        for schema, session_id in pairs:
            match |= Q(schema_name=schema, session_id=int(session_id))
        leases = leases.filter(match)
    return leases.update(host_id="", lease_expires_at=None)
