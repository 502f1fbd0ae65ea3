"""Leases: with several `whatsapp` hosts, each session runs on exactly one of them.

A host claims free or expired leases (FOR UPDATE SKIP LOCKED, so two hosts never take the same row), renews
all of its leases every heartbeat, and drops the sessions whose lease it no longer holds. A host that dies
stops renewing; once its leases expire, the others claim them. With LEASE_TTL 10 s (WHATSAPP_LEASE_TTL_SECONDS)
and a heartbeat every third of it, a dead host's sessions run elsewhere within about 14 s (measured: README);
a host shutting down cleanly releases its leases and wakes the others, so its sessions move at once.

Every claim counts a new `generation` of the lease. A host that was paused (a long GC, a frozen VM) past its
lease may wake still believing it runs the session: the generation it claimed (a `Fence`) is checked by every
state-changing write of the host (the drain's claim, the session's status events), so only the current holder's
writes land.
"""
import os
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import SessionLease


def _lease_ttl_seconds():
    """WHATSAPP_LEASE_TTL_SECONDS (setting or environment), 10 by default. Shorter means a dead host's sessions
    move sooner but every host writes its leases more often (a renewal is one UPDATE per host per heartbeat) and a
    pause of a third of it (two missed heartbeats) costs a host its sessions."""
    value = getattr(settings, "WHATSAPP_LEASE_TTL_SECONDS", None) or os.environ.get("WHATSAPP_LEASE_TTL_SECONDS")
    try:
        seconds = float(value) if value not in (None, "") else 10.0
    except ValueError:
        raise ValueError(f"WHATSAPP_LEASE_TTL_SECONDS must be a number of seconds, not {value!r}") from None
    if seconds < 3:
        raise ValueError("WHATSAPP_LEASE_TTL_SECONDS must be at least 3 (a heartbeat is a third of it)")
    return seconds


LEASE_TTL = timedelta(seconds=_lease_ttl_seconds())
# Three renewals per lifetime: a host misses two heartbeats (a long GC pause, a slow database) before it loses
# its sessions.
HEARTBEAT_INTERVAL = LEASE_TTL / 3

_TABLE = SessionLease._meta.db_table
# Fences are checked inside statements on tenant tables, whose search path starts with the tenant's schema.
_QUALIFIED = f"public.{_TABLE}"


def want_running(schema_name, session_id):
    """The session should run somewhere: make sure it has a lease row (free until a host claims it)."""
    SessionLease.objects.get_or_create(schema_name=schema_name, session_id=session_id)


def want_stopped(schema_name, session_id):
    SessionLease.objects.filter(schema_name=schema_name, session_id=session_id).delete()


def claim(host_id, *, limit=50, now=None):
    """Take up to `limit` sessions that nobody holds (or whose holder's lease expired). Returns their keys."""
    return sorted(claim_fenced(host_id, limit=limit, now=now))


def claim_fenced(host_id, *, limit=50, now=None):
    """claim(), each lease's generation counted up: {key: Fence}."""
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {_TABLE} SET host_id = %s, lease_expires_at = %s, generation = generation + 1
            WHERE id IN (
                SELECT id FROM {_TABLE}
                WHERE host_id = '' OR lease_expires_at IS NULL OR lease_expires_at < %s
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            RETURNING schema_name, session_id, generation
            """,
            [host_id, now + LEASE_TTL, now, limit],
        )
        return {f"{schema}:{session_id}": Fence(host_id, schema, session_id, generation)
                for schema, session_id, generation in cursor.fetchall()}


@dataclass(frozen=True)
class Fence:
    """The lease a host claimed: its holder and generation. `sql()` is a condition a statement adds to its WHERE so
    that it changes nothing once the lease moved on (expired or taken by another host)."""

    host_id: str
    schema_name: str
    session_id: int
    generation: int

    def sql(self):
        """(condition, params) true only while this lease is held and fresh."""
        return (f"EXISTS (SELECT 1 FROM {_QUALIFIED} l WHERE l.schema_name = %s AND l.session_id = %s "
                f"AND l.host_id = %s AND l.generation = %s AND l.lease_expires_at >= now())",
                [self.schema_name, self.session_id, self.host_id, self.generation])

    def held(self):
        condition, params = self.sql()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {condition}", params)
            return bool(cursor.fetchone()[0])


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


def expired(now=None):
    """[(schema_name, session_id)] of leases a host held and let expire (it died or hangs), not yet taken over."""
    now = now or timezone.now()
    return list(SessionLease.objects.exclude(host_id="").filter(lease_expires_at__lt=now)
                .values_list("schema_name", "session_id"))


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
