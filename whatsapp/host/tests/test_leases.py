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


def test_a_dead_hosts_sessions_move_within_seconds(sessions):
    start = timezone.now()
    assert leases.claim("host-a", now=start) == sorted(sessions)
    # host-a heartbeats for a while, then dies (stops renewing).
    died_at = start + leases.HEARTBEAT_INTERVAL
    assert leases.renew("host-a", now=died_at) == sorted(sessions)
    assert leases.claim("host-b", now=died_at + leases.LEASE_TTL / 2) == []  # lease still fresh
    taken = leases.claim("host-b", now=died_at + leases.LEASE_TTL + timedelta(seconds=1))
    assert taken == sorted(sessions)
    # The default: a dead host's sessions are claimed within a lease and a heartbeat, under 15 s.
    assert (leases.LEASE_TTL + leases.HEARTBEAT_INTERVAL) < timedelta(seconds=15)
    # If host-a was only paused, its next heartbeat learns it lost them and must stop them.
    assert leases.renew("host-a", now=died_at + leases.LEASE_TTL * 2) == []


def test_every_claim_counts_a_new_generation_and_only_the_current_one_holds(sessions):
    now = timezone.now()
    first = leases.claim_fenced("host-a", limit=1, now=now)
    [(key, fence_a)] = first.items()
    assert fence_a.held()
    SessionLease.objects.filter(host_id="host-a").update(lease_expires_at=now - timedelta(seconds=1))
    assert not fence_a.held()  # expired: host-a's writes stop at once, before anyone claims it
    [fence_b] = [f for k, f in leases.claim_fenced("host-b", limit=10).items() if k == key]
    assert fence_b.generation == fence_a.generation + 1 and fence_b.held() and not fence_a.held()
    # Even the same host id (a host that wakes and claims again) gets a new generation; the old one stays dead.
    leases.release("host-b")
    [fence_b2] = [f for k, f in leases.claim_fenced("host-b", limit=10).items() if k == key]
    assert fence_b2.generation == fence_b.generation + 1 and not fence_b.held()


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
