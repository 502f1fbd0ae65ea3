"""Leases give each session to exactly one host, and a dead host's sessions to a live one."""
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from whatsapp.host import leases
from whatsapp.host.models import SessionLease

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sessions():
    for session_id in range(1, 11):
        leases.want_running("t_acme", session_id)
    return [f"t_acme:{i}" for i in range(1, 11)]


def test_each_session_goes_to_exactly_one_host(sessions):
    now = timezone.now()
    a = leases.claim("host-a", limit=6, now=now)
    b = leases.claim("host-b", limit=6, now=now)
    assert len(a) == 6 and len(b) == 4
    assert set(a).isdisjoint(b) and set(a) | set(b) == set(sessions)
    assert leases.claim("host-c", now=now) == []


def test_concurrent_claims_never_overlap(sessions):
    results = {}

    def run(host):
        from django.db import connections

        try:
            results[host] = leases.claim(host, limit=10)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(f"host-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [key for keys in results.values() for key in keys]
    assert sorted(claimed) == sorted(sessions)  # every session once, none twice


def test_a_dead_hosts_sessions_move_within_a_minute(sessions):
    start = timezone.now()
    assert leases.claim("host-a", now=start) == sorted(sessions)
    # host-a heartbeats for a while, then dies (stops renewing).
    assert leases.renew("host-a", now=start + timedelta(seconds=15)) == sorted(sessions)
    died_at = start + timedelta(seconds=15)
    assert leases.claim("host-b", now=died_at + timedelta(seconds=30)) == []  # lease still fresh
    taken = leases.claim("host-b", now=died_at + leases.LEASE_TTL + timedelta(seconds=1))
    assert taken == sorted(sessions)
    assert (leases.LEASE_TTL + leases.HEARTBEAT_INTERVAL) <= timedelta(minutes=1)
    # If host-a was only paused, its next heartbeat learns it lost them and must stop them.
    assert leases.renew("host-a", now=died_at + timedelta(seconds=50)) == []


def test_clean_release_frees_sessions_at_once(sessions):
    now = timezone.now()
    leases.claim("host-a", now=now)
    assert leases.release("host-a", ["t_acme:1", "t_acme:2"]) == 2
    assert leases.claim("host-b", now=now) == ["t_acme:1", "t_acme:2"]
    leases.release("host-a")
    assert len(leases.claim("host-b", now=now)) == 8


def test_stopped_sessions_lose_their_lease(sessions):
    now = timezone.now()
    leases.claim("host-a", now=now)
    leases.want_stopped("t_acme", 3)
    assert "t_acme:3" not in leases.renew("host-a", now=now)
    assert SessionLease.objects.count() == 9
    leases.want_running("t_acme", 3)
    leases.want_running("t_acme", 3)  # idempotent
    assert leases.claim("host-b", now=now) == ["t_acme:3"]
