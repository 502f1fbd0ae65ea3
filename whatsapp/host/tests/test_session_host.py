"""The session host with the simulator: events become database state and live updates; sessions come back
after a restart without a new scan; two hosts never run the same session; a dead host's sessions move."""
import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from whatsapp.host import leases
from whatsapp.host.models import SessionLease
from whatsapp.host.runtime import SessionHost
from whatsapp.models import SessionActivity, WhatsAppSession
from whatsapp.providers.base import EventKind, ProviderEvent, ProviderSettings
from whatsapp.providers.simulator import SimulatorProvider
from whatsapp.sessions.events import session_group

pytestmark = pytest.mark.django_db(transaction=True)
SCHEMA = "t_test_acme"


@pytest.fixture
def provider_class(clock):
    return type("TestSimulator", (SimulatorProvider,), {"scheduler": clock})


@pytest.fixture
def make_host(provider_class, tmp_path):
    hosts = []

    def build(host_id):
        host = SessionHost(provider_class, store_dir=str(tmp_path / "stores"), host_id=host_id,
                           settings=ProviderSettings(max_qr_attempts=3, reconnect_delay_ms=10))
        hosts.append(host)
        return host

    yield build
    for host in hosts:
        host.stop(release=True)


def wanted_session(name, **fields):
    with schema_context(SCHEMA):
        session = WhatsAppSession.objects.create(name=name, should_run=True, **fields)
    leases.want_running(SCHEMA, session.pk)
    return session


def reload(session):
    with schema_context(SCHEMA):
        return WhatsAppSession.objects.get(pk=session.pk)


def drain(host):
    while not host.events.empty():
        host.handle(host.events.get())


def activity(session):
    with schema_context(SCHEMA):
        return list(SessionActivity.objects.filter(session_id=session.pk).order_by("id")
                    .values_list("kind", flat=True))


def test_qr_scan_and_connected_reach_the_database(named, make_host, clock):
    session = wanted_session("front-desk")
    host = make_host("host-a")
    assert host.sync() == {f"{SCHEMA}:{session.pk}"}
    assert reload(session).status == "starting"
    clock.advance(1)
    drain(host)
    qr = reload(session)
    assert qr.status == "qr" and qr.qr_code.startswith("2@") and qr.qr_expires_at > timezone.now()
    first_code = qr.qr_code
    clock.advance(60)
    drain(host)
    assert reload(session).qr_code != first_code  # rotated, no new activity row per rotation
    host.provider(f"{SCHEMA}:{session.pk}").simulate_scan("+6281234567890", push_name="Front Desk")
    clock.advance(1)
    drain(host)
    connected = reload(session)
    assert connected.status == "connected" and connected.phone == "+6281234567890"
    assert connected.jid_user == "6281234567890" and connected.qr_code == ""
    assert connected.status_detail == "Connected as +6281234567890 (Front Desk)"
    assert activity(session) == ["started", "qr_issued", "connected"]
    with schema_context(SCHEMA):
        started = SessionActivity.objects.get(session_id=session.pk, kind="started")
    # The tenant reads "Started"; which host runs the session is for the operators' logs.
    assert started.get_kind_display() == "Started" and "host" not in started.message


def test_a_restarted_host_brings_linked_sessions_back_without_a_scan(named, make_host, clock):
    session = wanted_session("front-desk")
    first = make_host("host-a")
    first.sync()
    clock.advance(1)
    drain(first)
    first.provider(f"{SCHEMA}:{session.pk}").simulate_scan("+14155550123")
    clock.advance(1)
    drain(first)
    assert reload(session).status == "connected"
    first.stop(release=True)  # the whatsapp process restarts

    second = make_host("host-b")
    second.sync()
    clock.advance(1)
    drain(second)
    resumed = reload(session)
    assert resumed.status == "connected" and resumed.phone == "+14155550123"
    assert "qr_issued" not in activity(session)[3:]
    with schema_context(SCHEMA):
        resumed_row = SessionActivity.objects.filter(session_id=session.pk).order_by("id")[3]
    assert (resumed_row.kind, resumed_row.message) == ("restarted", "Resuming the linked device: no scan needed.")


def test_two_hosts_never_run_the_same_session(named, make_host):
    sessions = [wanted_session(f"s{i}") for i in range(4)]
    a, b = make_host("host-a"), make_host("host-b")
    held_a, held_b = a.sync(), b.sync()
    assert len(held_a) == 4 and held_b == set()
    assert set(a.providers) == held_a and b.providers == {}
    assert len(sessions) == SessionLease.objects.filter(host_id="host-a").count()


def test_a_dead_hosts_sessions_are_taken_over_and_the_old_host_lets_go(named, make_host, clock):
    session = wanted_session("front-desk")
    a, b = make_host("host-a"), make_host("host-b")
    now = timezone.now()
    a.sync(now=now)
    later = now + leases.LEASE_TTL + timedelta(seconds=1)  # host-a stopped heartbeating
    assert b.sync(now=later) == {f"{SCHEMA}:{session.pk}"}
    assert f"{SCHEMA}:{session.pk}" in b.providers
    assert a.sync(now=later) == set() and a.providers == {}  # it was only paused: it stops its copy


def test_logout_from_the_phone_stops_the_session_and_frees_its_lease(named, make_host, clock):
    session = wanted_session("front-desk")
    host = make_host("host-a")
    host.sync()
    clock.advance(1)
    drain(host)
    key = f"{SCHEMA}:{session.pk}"
    host.provider(key).simulate_scan("+14155550123")
    clock.advance(1)
    drain(host)
    host.provider(key).simulate_logout()
    drain(host)
    logged_out = reload(session)
    assert logged_out.status == "logged_out" and not logged_out.should_run and logged_out.jid_user == ""
    assert key not in host.providers
    assert not SessionLease.objects.exists()


def test_qr_expiry_stops_the_session_with_a_clear_message(named, make_host, clock):
    session = wanted_session("front-desk")
    host = make_host("host-a")
    host.sync()
    clock.advance(1 + 60 + 20 + 20 + 1)
    drain(host)
    expired = reload(session)
    assert expired.status == "stopped" and "Restart the session" in expired.status_detail
    assert not expired.should_run and not SessionLease.objects.exists()


def test_a_session_deleted_or_unwanted_is_not_started(named, make_host):
    session = wanted_session("front-desk")
    with schema_context(SCHEMA):
        WhatsAppSession.objects.filter(pk=session.pk).update(should_run=False)
    host = make_host("host-a")
    assert host.sync() == {f"{SCHEMA}:{session.pk}"}
    assert host.providers == {} and not SessionLease.objects.exists()


def test_one_broken_client_does_not_stop_its_neighbours(named, make_host, clock, monkeypatch):
    broken = wanted_session("broken")
    healthy = wanted_session("healthy")
    host = make_host("host-a")
    original = SimulatorProvider.start

    def start(self, **kwargs):
        if self.session_key.endswith(f":{broken.pk}"):
            raise RuntimeError("store is unreadable")
        return original(self, **kwargs)

    monkeypatch.setattr(SimulatorProvider, "start", start)
    host.sync()
    clock.advance(1)
    drain(host)
    assert reload(broken).status == "error" and "store is unreadable" in reload(broken).status_detail
    assert reload(healthy).status == "qr"


def test_live_updates_go_to_the_sessions_group_of_its_tenant(named, make_host, clock, private_layer):
    session = wanted_session("front-desk")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(session_group(SCHEMA, session.pk), channel)
    host = make_host("host-a")
    host.sync()
    clock.advance(1)
    drain(host)

    async def receive():
        return await asyncio.wait_for(layer.receive(channel), timeout=2)

    message = async_to_sync(receive)()
    assert message["type"] == "session.update"
    assert message["data"]["status"] == "qr" and message["data"]["qr_code"].startswith("2@")


def test_the_threaded_host_runs_end_to_end(named, provider_class, tmp_path):
    """No manual clock: the real lease and publisher threads and the simulator's own clock thread."""
    from whatsapp.providers.simulator import SimulatorTiming

    fast = type("FastSimulator", (SimulatorProvider,), {
        "timing": SimulatorTiming(connect_s=0.05, first_qr_s=60, qr_rotation_s=20)})
    session = wanted_session("front-desk")
    host = SessionHost(fast, store_dir=str(tmp_path), host_id="host-threads", heartbeat_seconds=0.2,
                       settings=ProviderSettings())
    host.start()
    try:
        deadline = timezone.now() + timedelta(seconds=10)
        while reload(session).status != "qr" and timezone.now() < deadline:
            connection.close()
            import time

            time.sleep(0.05)
        assert reload(session).status == "qr"
    finally:
        host.stop(release=True)
    assert SessionLease.objects.get().host_id == ""


def test_a_silently_dead_connection_is_restarted_and_logged(named, make_host, clock):
    from whatsapp.host.runtime import ZOMBIE_AFTER_SECONDS

    session = wanted_session("front-desk")
    host = make_host("host-a")
    host.sync()
    clock.advance(1)
    drain(host)
    key = f"{SCHEMA}:{session.pk}"
    host.provider(key).simulate_scan("+14155550123")
    clock.advance(1)
    drain(host)
    zombie = host.provider(key)
    zombie.simulate_silence()
    assert reload(session).status == "connected"  # nothing was said

    host.watchdog(now=1000.0)  # first noticed
    host.watchdog(now=1000.0 + ZOMBIE_AFTER_SECONDS - 1)
    assert host.provider(key) is zombie
    host.watchdog(now=1000.0 + ZOMBIE_AFTER_SECONDS)
    assert host.provider(key) is not zombie  # a fresh client for the same linked device
    clock.advance(1)
    drain(host)
    restored = reload(session)
    assert restored.status == "connected"
    with schema_context(SCHEMA):
        messages = list(SessionActivity.objects.filter(session_id=session.pk).values_list("kind", "message"))
    assert any(kind == "reconnecting" and "No answer from WhatsApp" in message for kind, message in messages)
    assert [kind for kind, _ in messages][:3] == ["connected", "restarted", "reconnecting"]


def test_a_paused_host_that_wakes_after_losing_its_lease_sends_nothing_and_changes_nothing(
        named, make_host, clock, settings):
    """Fencing: host-a is paused past its lease (no heartbeat), host-b takes the session over. host-a wakes with
    its client still running and a drain under way before it learns (at its next heartbeat) that it lost the
    session: its drain claims nothing, its status events are ignored; host-b sends every message once."""
    from whatsapp.models import Message
    from whatsapp.providers import simulator_outbox

    settings.WHATSAPP_PACING_ENABLED = False
    session = wanted_session("front-desk")
    key = f"{SCHEMA}:{session.pk}"
    a, b = make_host("host-a"), make_host("host-b")
    a.sync()
    clock.advance(1)
    drain(a)
    a.provider(key).simulate_scan("+14155550123")
    clock.advance(1)
    drain(a)
    assert reload(session).status == "connected"
    with schema_context(SCHEMA):
        queued = [Message.objects.create(session_id=session.pk, direction="out", chat_jid="1@s.whatsapp.net",
                                         text=f"m{i}") for i in range(3)]

    # host-a pauses: its lease expires and host-b claims the session (it resumes the same linked device).
    SessionLease.objects.filter(host_id="host-a").update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert b.sync() == {key}
    clock.advance(1)
    drain(b)
    assert reload(session).status == "connected" and b.fences[key].generation == a.fences[key].generation + 1

    # host-a wakes: its copy of the client still runs and reports, and a drain it was asked for runs.
    a.drain(key)
    a.handle(ProviderEvent(key, EventKind.DISCONNECTED, {"reason": "stale", "will_retry": True, "retry_in": 1}))
    assert simulator_outbox.read(a.store_dir) == []  # nothing sent by the host that lost the lease
    assert reload(session).status == "connected"  # its stale status event changed nothing
    with schema_context(SCHEMA):
        assert set(Message.objects.values_list("status", flat=True)) == {"queued"}

    b.drain(key)
    sent = simulator_outbox.read(b.store_dir)
    assert sorted(r["text"] for r in sent) == ["m0", "m1", "m2"]  # once each, by host-b
    with schema_context(SCHEMA):
        assert {m.status for m in Message.objects.filter(pk__in=[m.pk for m in queued])} == {"sent"}
    assert a.sync() == set() and a.providers == {}  # its next heartbeat: it lets go


def test_a_clean_shutdown_hands_the_sessions_over_at_once(named, make_host, clock):
    session = wanted_session("front-desk")
    key = f"{SCHEMA}:{session.pk}"
    a, b = make_host("host-a"), make_host("host-b")
    assert a.sync() == {key} and b.sync() == set()
    a.stop(release=True)  # warm shutdown: no waiting for the lease to expire
    assert b.sync() == {key} and key in b.providers


def test_what_a_dead_host_had_not_committed_is_redelivered_to_the_next_and_stored_once(named, make_host, clock,
                                                                                       settings):
    """WhatsApp's offline queue: host-a dies with receipts and inbound messages heard but not committed, and one
    inbound message committed but not acknowledged (killed between the two). host-b resumes the device: it gets
    everything not acknowledged again, applies it once, and acknowledges it, so a third connection gets nothing."""
    from whatsapp.host import handlers
    from whatsapp.models import Message
    from whatsapp.providers import simulator_server

    settings.WHATSAPP_PACING_ENABLED = False
    session = wanted_session("front-desk")
    key = f"{SCHEMA}:{session.pk}"
    a, b = make_host("host-a"), make_host("host-b")
    a.sync()
    clock.advance(1)
    drain(a)
    a.provider(key).simulate_scan("+14155550123")
    clock.advance(1)
    drain(a)
    with schema_context(SCHEMA):
        out = [Message.objects.create(session_id=session.pk, direction="out", chat_jid="1@s.whatsapp.net",
                                      text=f"m{i}") for i in range(3)]
    a.drain(key)
    provider = a.provider(key)
    inbound = [provider.simulate_inbound("+447700900123", f"in{i}") for i in range(3)]
    clock.advance(1)  # the delivery receipts come
    heard = []
    while not a.events.empty():
        heard.append(a.events.get())
    assert [e.kind for e in heard] == ["message"] * 3 + ["receipt"] * 3
    a.handle(heard[0])  # committed and acknowledged
    handlers.apply(heard[1])  # committed; killed before the acknowledgement
    # host-a is SIGKILLed: the rest of its queue is gone, its client with it, its lease runs out.
    a.providers.pop(key).stop()
    SessionLease.objects.filter(host_id="host-a").update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert b.sync() == {key}
    clock.advance(1)
    b.handle_many([b.events.get() for _ in range(b.events.qsize())])
    clock.advance(3)  # the read receipts
    b.handle_many([b.events.get() for _ in range(b.events.qsize())])
    with schema_context(SCHEMA):
        stored = list(Message.objects.filter(direction="in").values_list("provider_message_id", flat=True))
        statuses = {m.status for m in Message.objects.filter(pk__in=[m.pk for m in out])}
    assert sorted(stored) == sorted(inbound)  # each once: the committed one's redelivery was ignored
    assert statuses == {"read"}
    assert simulator_server.pending(b.store_dir, key) == []  # all acknowledged once committed

    b.providers[key].stop()
    b.providers.pop(key)
    b.sync()  # starts it again: a new connection
    clock.advance(1)
    assert [e.kind for e in list(b.events.queue)] == ["connected"]


def test_an_event_that_could_not_be_applied_is_not_acknowledged(named, make_host, clock, monkeypatch):
    from whatsapp.host import handlers
    from whatsapp.providers import simulator_server

    session = wanted_session("front-desk")
    key = f"{SCHEMA}:{session.pk}"
    host = make_host("host-a")
    host.sync()
    clock.advance(1)
    drain(host)
    host.provider(key).simulate_scan("+14155550123")
    clock.advance(1)
    drain(host)
    host.provider(key).simulate_inbound("+447700900123", "hello")

    def broken(event):
        raise RuntimeError("database down")

    monkeypatch.setattr(handlers, "apply", broken)
    host.handle_many([host.events.get()])
    assert len(simulator_server.pending(host.store_dir, key)) == 1  # WhatsApp still has it for the next connection
