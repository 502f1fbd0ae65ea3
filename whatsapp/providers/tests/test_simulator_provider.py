"""The simulator provider: WhatsApp's side of a linked device, driven through a manual clock (no sleeps), plus
a smoke test on the real scheduler thread. No database."""
import json
import os
import re
import threading
import time

import pytest

from whatsapp.providers.base import DeviceIdentity, EventKind, OutgoingMessage, ProviderError, ProviderSettings
from whatsapp.providers.simulator import (
    ManualScheduler,
    SimulatorProvider,
    SimulatorTiming,
    ThreadScheduler,
    chat_presence_seen,
    get_simulated_session,
    new_pair_code,
    store_path,
)

PHONE = "+1 555 010 0001"
DIGITS = "15550100001"
PAIR_CODE = re.compile(r"^[1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}$")
SETTINGS = ProviderSettings(max_qr_attempts=3, max_reconnect_attempts=3, reconnect_delay_ms=5000)
TEXT = OutgoingMessage(type="text", text="hello")


class Recorder:
    def __init__(self):
        self.events = []
        self._lock = threading.Lock()

    def __call__(self, event):
        with self._lock:
            self.events.append(event)

    def kinds(self):
        return [e.kind for e in self.events]

    def of(self, kind):
        return [e.data for e in self.events if e.kind == kind]

    def clear(self):
        self.events.clear()


@pytest.fixture
def make(tmp_path, clock):
    """A provider on the manual clock with WhatsApp's real delays, its store under tmp_path."""

    def make(key="t_acme:1", *, identity=None, settings=SETTINGS, scheduler=None, timing=None):
        events = Recorder()
        provider = SimulatorProvider(key, emit=events, settings=settings, store_dir=str(tmp_path / "store"),
                                     identity=identity, scheduler=scheduler or clock, timing=timing)
        return provider, events

    return make


@pytest.fixture
def linked(make, clock):
    """A connected session linked to PHONE."""
    provider, events = make()
    provider.start()
    clock.advance(0.2)
    provider.simulate_scan(PHONE, push_name="Alice")
    clock.advance(0.2)
    assert provider.is_connected
    events.clear()
    return provider, events


def test_qr_rotates_after_60_s_then_every_20_s_until_the_attempt_limit(make, clock):
    provider, events = make()
    provider.start()
    assert events.kinds() == []
    clock.advance(0.2)
    first = events.of(EventKind.QR)
    assert [(q["attempt"], q["expires_in"], q["max_attempts"]) for q in first] == [(1, 60.0, 3)]
    assert provider.status == "pairing_qr"

    clock.advance(59.9)
    assert len(events.of(EventKind.QR)) == 1
    clock.advance(0.1)
    assert [(q["attempt"], q["expires_in"]) for q in events.of(EventKind.QR)] == [(1, 60.0), (2, 20.0)]
    clock.advance(20)
    codes = [q["code"] for q in events.of(EventKind.QR)]
    assert len(codes) == 3
    clock.advance(19.9)
    assert EventKind.QR_EXPIRED not in events.kinds()
    clock.advance(0.1)
    assert events.kinds() == [EventKind.QR] * 3 + [EventKind.QR_EXPIRED]
    assert events.of(EventKind.QR_EXPIRED) == [{"attempts": 3, "message": "QR expired, restart"}]
    assert provider.status == "qr_expired" and clock.pending() == 0

    # "2@ref,noise key,identity key,adv secret": the ref changes with every code, the device's keys do not.
    parts = [code.split(",") for code in codes]
    assert all(len(p) == 4 and p[0].startswith("2@") and all(len(x) > 20 for x in p) for p in parts)
    assert len({p[0] for p in parts}) == 3 and len({tuple(p[1:]) for p in parts}) == 1

    with pytest.raises(ProviderError) as exc:
        provider.simulate_scan(PHONE)
    assert exc.value.code == "not_pairing"
    clock.advance(1000)
    assert len(events.events) == 4

    provider.start()  # a restart begins a new series
    clock.advance(0.2)
    assert events.of(EventKind.QR)[-1]["attempt"] == 1


def test_pairing_code_instead_of_qr(make, clock):
    provider, events = make()
    provider.start(pairing_phone=PHONE)
    clock.advance(0.2)
    assert events.kinds() == [EventKind.PAIR_CODE]
    data = events.of(EventKind.PAIR_CODE)[0]
    assert PAIR_CODE.match(data["code"]) and data["phone"] == f"+{DIGITS}"
    assert data["expires_in"] == 100.0  # the same window as three QR codes
    assert provider.status == "pairing_code"

    with pytest.raises(ProviderError) as exc:
        provider.simulate_scan("+44 20 7946 0000")
    assert exc.value.code == "wrong_phone"
    provider.simulate_scan(PHONE)
    assert events.kinds()[-1] == EventKind.PAIRED

    for _ in range(200):
        code = new_pair_code()
        assert PAIR_CODE.match(code) and not set(code) & set("0OIU")


def test_request_pairing_code_while_the_qr_is_shown_replaces_it(make, clock):
    provider, events = make()
    provider.start()
    clock.advance(30.2)
    provider.request_pairing_code(PHONE)
    assert events.kinds() == [EventKind.QR, EventKind.PAIR_CODE]
    assert events.of(EventKind.PAIR_CODE)[0]["expires_in"] == pytest.approx(70.0)
    clock.advance(69.9)
    assert events.kinds() == [EventKind.QR, EventKind.PAIR_CODE]  # no more QR codes
    clock.advance(0.1)
    assert events.kinds()[-1] == EventKind.QR_EXPIRED

    with pytest.raises(ProviderError) as exc:
        provider.request_pairing_code("12")
    assert exc.value.code == "invalid_phone"
    provider.request_pairing_code(PHONE)  # not running: starts pairing by code
    clock.advance(0.2)
    assert events.kinds()[-1] == EventKind.PAIR_CODE


def test_scan_links_the_phone_then_connects(make, clock, tmp_path):
    provider, events = make()
    provider.start()
    clock.advance(0.2)
    identity = provider.simulate_scan(PHONE, push_name="Alice")
    assert events.kinds() == [EventKind.QR, EventKind.PAIRED]
    paired = events.of(EventKind.PAIRED)[0]
    assert paired == {"jid_user": DIGITS, "jid_device": identity.jid_device, "phone": f"+{DIGITS}",
                      "push_name": "Alice"}
    assert 1 <= identity.jid_device <= 60 and provider.identity == identity
    assert not provider.is_connected

    clock.advance(0.2)
    assert events.kinds() == [EventKind.QR, EventKind.PAIRED, EventKind.CONNECTED]
    assert events.of(EventKind.CONNECTED)[0] == paired
    assert provider.is_connected
    clock.advance(1000)  # the pairing deadline and QR rotations are gone
    assert len(events.events) == 3

    stored = json.loads(open(store_path(str(tmp_path / "store"), "t_acme:1")).read())
    assert stored["jid_user"] == DIGITS and stored["jid_device"] == identity.jid_device


def test_resume_from_the_store_in_a_new_instance_without_qr(make, linked):
    provider, _ = linked
    identity = provider.identity
    provider.stop()
    assert not provider.is_connected

    restarted_clock = ManualScheduler()  # a new process: new provider, new clock, same store directory
    fresh, events = make(identity=identity, scheduler=restarted_clock)
    fresh.start()
    restarted_clock.advance(0.1)
    assert events.kinds() == []
    restarted_clock.advance(0.1)
    assert events.kinds() == [EventKind.CONNECTED]
    assert events.of(EventKind.CONNECTED)[0] == {"phone": f"+{DIGITS}", "push_name": "Alice", "jid_user": DIGITS,
                                                 "jid_device": identity.jid_device}
    assert fresh.is_connected
    assert get_simulated_session("t_acme:1") is fresh


def test_resume_without_the_device_in_the_store_needs_a_new_scan(make, linked, clock):
    provider, _ = linked
    other, events = make("t_acme:2", identity=DeviceIdentity(DIGITS, 7))  # never linked: no store file
    other.start()
    clock.advance(0.2)
    assert events.kinds() == [EventKind.LOGGED_OUT]
    assert events.of(EventKind.LOGGED_OUT)[0] == {"reason": "device not linked"}
    assert other.identity is None and other.status == "logged_out"

    wrong_device = DeviceIdentity(DIGITS, provider.identity.jid_device + 1)
    provider.stop()
    same_key, events = make(identity=wrong_device)
    same_key.start()
    clock.advance(0.2)
    assert events.of(EventKind.LOGGED_OUT) == [{"reason": "device not linked"}]


def test_send_returns_an_id_then_delivered_then_read(linked, clock):
    provider, events = linked
    message_id = provider.send("+44 20 7946 0000", TEXT)
    assert re.fullmatch(r"SIM[0-9A-F]{16}", message_id)
    clock.advance(0.99)
    assert events.kinds() == []
    clock.advance(0.01)
    clock.advance(1.99)
    receipts = events.of(EventKind.RECEIPT)
    assert [(r["ids"], r["status"], r["chat"]) for r in receipts] == [
        ([message_id], "delivered", "442079460000@s.whatsapp.net")]
    clock.advance(0.01)
    assert [r["status"] for r in events.of(EventKind.RECEIPT)] == ["delivered", "read"]
    assert all(isinstance(r["timestamp"], int) for r in events.of(EventKind.RECEIPT))

    group_id = provider.send("120363000000000000@g.us", TEXT)
    clock.advance(3)
    assert events.of(EventKind.RECEIPT)[-1] == {**events.of(EventKind.RECEIPT)[-1], "ids": [group_id],
                                                "chat": "120363000000000000@g.us", "status": "read"}
    for bad in ("nobody", "x@example.com", ""):
        with pytest.raises(ProviderError) as exc:
            provider.send(bad, TEXT)
        assert exc.value.code == "invalid_recipient"


def test_send_when_not_connected_or_failing(make, linked, clock):
    fresh, _ = make("t_acme:9")
    with pytest.raises(ProviderError) as exc:
        fresh.send(PHONE, TEXT)
    assert exc.value.code == "not_connected"
    fresh.start()
    clock.advance(0.2)  # showing a QR code
    with pytest.raises(ProviderError) as exc:
        fresh.send(PHONE, TEXT)
    assert exc.value.code == "not_connected"

    provider, events = linked
    provider.fail_next_send("rate_limited")
    with pytest.raises(ProviderError) as exc:
        provider.send(PHONE, TEXT)
    assert exc.value.code == "rate_limited"
    assert provider.send(PHONE, TEXT).startswith("SIM")  # only the next one fails
    with pytest.raises(ProviderError) as exc:
        provider.send(PHONE, OutgoingMessage(type="hologram"))
    assert exc.value.code == "unsupported_type"


def test_inbound_message(linked, make):
    provider, events = linked
    message_id = provider.simulate_inbound("+44 20 7946 0000", "hi there")
    assert events.kinds() == [EventKind.MESSAGE]
    data = events.of(EventKind.MESSAGE)[0]
    assert data == {"id": message_id, "chat": "442079460000@s.whatsapp.net",
                    "sender": "442079460000@s.whatsapp.net", "sender_phone": "+442079460000", "from_me": False,
                    "timestamp": data["timestamp"], "type": "text", "text": "hi there"}
    assert abs(data["timestamp"] - time.time()) < 5

    fresh, _ = make("t_acme:9")
    with pytest.raises(ProviderError) as exc:
        fresh.simulate_inbound(PHONE, "hi")
    assert exc.value.code == "not_connected"


def test_disconnect_then_reconnect_by_itself(linked, clock):
    provider, events = linked
    message_id = provider.send(PHONE, TEXT)
    provider.simulate_disconnect()
    assert events.of(EventKind.DISCONNECTED) == [
        {"reason": "connection lost", "will_retry": True, "retry_in": 5.0, "attempt": 1}]
    assert not provider.is_connected and provider.status == "reconnecting"
    with pytest.raises(ProviderError) as exc:
        provider.send(PHONE, TEXT)
    assert exc.value.code == "not_connected"
    with pytest.raises(ProviderError) as exc:
        provider.simulate_disconnect()
    assert exc.value.code == "not_connected"

    clock.advance(4.9)  # the delivery receipt fell due while disconnected: held
    assert events.kinds() == [EventKind.DISCONNECTED]
    clock.advance(0.1)
    assert events.kinds() == [EventKind.DISCONNECTED, EventKind.CONNECTED, EventKind.RECEIPT]
    assert provider.is_connected
    clock.advance(2)
    assert [(r["ids"], r["status"]) for r in events.of(EventKind.RECEIPT)] == [
        ([message_id], "delivered"), ([message_id], "read")]


def test_logout_deletes_the_store(make, linked, clock):
    provider, events = linked
    identity = provider.identity
    path = provider.store_file
    assert os.path.exists(path)
    provider.simulate_logout()
    assert events.of(EventKind.LOGGED_OUT) == [{"reason": "logged out from the phone"}]
    assert not os.path.exists(path) and provider.identity is None and not provider.is_connected
    with pytest.raises(ProviderError) as exc:
        provider.simulate_logout()
    assert exc.value.code == "not_linked"

    again, events = make(identity=identity)  # after a restart the device is gone
    again.start()
    clock.advance(0.2)
    assert events.of(EventKind.LOGGED_OUT) == [{"reason": "device not linked"}]

    again.start()  # without identity now: a new pairing, and logout() (the host's) clears it all
    clock.advance(0.2)
    again.simulate_scan(PHONE)
    clock.advance(0.2)
    assert os.path.exists(path)
    again.logout()
    assert events.kinds()[-1] == EventKind.LOGGED_OUT and not os.path.exists(path)
    clock.advance(1000)
    assert events.kinds()[-1] == EventKind.LOGGED_OUT


def test_unreachable_retries_with_backoff_then_errors(make, clock):
    provider, events = make()
    provider.set_unreachable(True)
    provider.start()
    clock.advance(0.2)
    clock.advance(5 + 10 + 20)
    disconnects = events.of(EventKind.DISCONNECTED)
    assert [(d["attempt"], d["retry_in"], d["will_retry"]) for d in disconnects] == [
        (1, 5.0, True), (2, 10.0, True), (3, 20.0, True)]
    assert {d["reason"] for d in disconnects} == {"cannot reach WhatsApp"}
    assert events.kinds() == [EventKind.DISCONNECTED] * 3 + [EventKind.ERROR]
    error = events.of(EventKind.ERROR)[0]
    assert error["code"] == "unreachable" and error["fatal"] is True
    assert provider.status == "error" and clock.pending() == 0


def test_unreachable_then_reachable_again_connects(linked, clock):
    provider, events = linked
    provider.set_unreachable(True)
    provider.simulate_disconnect("stream error")
    clock.advance(5)  # the first retry fails too
    assert [d["attempt"] for d in events.of(EventKind.DISCONNECTED)] == [1, 2]
    provider.set_unreachable(False)
    clock.advance(10)
    assert events.kinds()[-1] == EventKind.CONNECTED


def test_corrupt_store_is_a_fatal_error_until_logout(make, linked, clock):
    provider, _ = linked
    identity = provider.identity
    provider.stop()
    provider.corrupt_store()

    again, events = make(identity=identity)
    again.start()
    clock.advance(0.2)
    assert events.kinds() == [EventKind.ERROR]
    error = events.of(EventKind.ERROR)[0]
    assert error["code"] == "store_corrupt" and error["fatal"] is True
    again.start()  # still corrupt
    clock.advance(0.2)
    assert events.kinds() == [EventKind.ERROR, EventKind.ERROR]

    again.logout()  # relink
    again.start()
    clock.advance(0.2)
    assert events.kinds()[-1] == EventKind.QR


def test_stop_cancels_pending_timers(linked, clock, make):
    provider, events = linked
    provider.send(PHONE, TEXT)
    provider.simulate_disconnect()
    provider.stop()
    assert clock.pending() == 0
    clock.advance(1000)
    assert events.kinds() == [EventKind.DISCONNECTED]

    pairing, events = make("t_acme:3")
    pairing.start()
    clock.advance(0.2)
    pairing.stop()
    clock.advance(1000)
    assert events.kinds() == [EventKind.QR]
    with pytest.raises(ProviderError):
        pairing.simulate_scan(PHONE)


def test_a_timer_already_running_when_stop_is_called_does_nothing(make):
    class LateCancelScheduler(ManualScheduler):
        """Timers whose cancel() comes too late, as when the clock thread already picked them up."""

        def call_later(self, delay, fn):
            super().call_later(delay, fn)
            return IgnoredCancel()

    class IgnoredCancel:
        def cancel(self):
            pass

    clock = LateCancelScheduler()
    provider, events = make(scheduler=clock)
    provider.start()
    clock.advance(0.2)
    provider.stop()
    clock.advance(1000)
    assert events.kinds() == [EventKind.QR]


def test_start_while_running_is_refused(make, clock):
    provider, _ = make()
    provider.start()
    with pytest.raises(ProviderError) as exc:
        provider.start()
    assert exc.value.code == "already_running"


def test_many_sends_from_several_threads_each_receipt_arrives_once(linked, clock):
    provider, events = linked
    ids, errors = [], []
    lock = threading.Lock()

    def sender():
        try:
            mine = [provider.send(PHONE, TEXT) for _ in range(200)]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
            return
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not errors and len(ids) == len(set(ids)) == 1600
    clock.advance(3)
    seen = {}
    for receipt in events.of(EventKind.RECEIPT):
        seen.setdefault(receipt["ids"][0], []).append(receipt["status"])
    assert seen == {message_id: ["delivered", "read"] for message_id in ids}


def test_real_clock_thread_smoke(make):
    scheduler = ThreadScheduler(name="test-simulator-clock")
    timing = SimulatorTiming(first_qr_s=0.05, qr_rotation_s=0.02, delivered_s=0.005, read_s=0.01, connect_s=0.001)
    try:
        provider, events = make(scheduler=scheduler, timing=timing)
        provider.start()
        _wait_for(lambda: EventKind.QR in events.kinds())
        provider.simulate_scan(PHONE)
        _wait_for(lambda: provider.is_connected)

        ids = []
        lock = threading.Lock()

        def sender():
            mine = [provider.send(PHONE, TEXT) for _ in range(50)]
            with lock:
                ids.extend(mine)

        threads = [threading.Thread(target=sender) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        _wait_for(lambda: len(events.of(EventKind.RECEIPT)) >= 400)
        time.sleep(0.05)  # nothing more may come
        statuses = {}
        for receipt in events.of(EventKind.RECEIPT):
            statuses.setdefault(receipt["ids"][0], []).append(receipt["status"])
        assert statuses == {message_id: ["delivered", "read"] for message_id in ids}
        assert EventKind.QR_EXPIRED not in events.kinds()
    finally:
        scheduler.close()


def test_thread_scheduler_runs_in_due_order_and_honours_cancel():
    scheduler = ThreadScheduler(name="test-simulator-clock")
    ran, done = [], threading.Event()
    try:
        scheduler.call_later(0.03, lambda: (ran.append("c"), done.set()))
        scheduler.call_later(0.01, lambda: ran.append("a"))
        scheduler.call_later(0.02, lambda: 1 / 0)  # logged, the thread goes on
        scheduler.call_later(0.015, lambda: ran.append("x")).cancel()
        scheduler.call_later(0.02, lambda: ran.append("b"))
        assert done.wait(2)
        assert ran == ["a", "b", "c"]
    finally:
        scheduler.close()


def test_store_files_of_distinct_keys_never_collide(tmp_path):
    paths = {store_path(str(tmp_path), key) for key in ("t_a:1", "t_a_1", "t_a%3A1", "../x", "t_a:1/..")}
    assert len(paths) == 5
    assert all(os.path.dirname(p) == str(tmp_path) and p.endswith(".simulator.json") for p in paths)


def test_registry_finds_the_provider_by_session_key(make):
    provider, _ = make("t_globex:42")
    assert get_simulated_session("t_globex:42") is provider
    with pytest.raises(ProviderError) as exc:
        get_simulated_session("t_globex:404")
    assert exc.value.code == "unknown_session"


def _wait_for(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


# --- WhatsApp's offline queue (simulator_server): kept until acknowledged, redelivered on connect ---------------


def test_receipts_due_while_no_host_runs_the_session_arrive_when_it_connects_again_anywhere(make, linked, clock):
    from whatsapp.providers import simulator_server

    provider, events = linked
    message_id = provider.send(PHONE, TEXT)
    provider.stop()  # the host dies: its timers are gone, nothing was acknowledged
    clock.advance(10)  # the delivery receipt falls due while no host runs the session
    assert events.of(EventKind.RECEIPT) == []
    assert [i["status"] for _, i in simulator_server.pending(provider.store_dir, provider.session_key)] == [
        "delivered"]

    elsewhere, later = make(identity=provider.identity)  # another host resumes the device
    elsewhere.start()
    clock.advance(0.2)
    assert later.kinds() == [EventKind.CONNECTED, EventKind.RECEIPT]
    delivered = later.events[-1]
    assert delivered.data["ids"] == [message_id] and delivered.data["status"] == "delivered"
    clock.advance(2)
    read = later.events[-1]
    assert read.kind == EventKind.RECEIPT and read.data["status"] == "read"

    # Not acknowledged: the next connection gets both again. Acknowledged: never again.
    elsewhere.stop()
    again, third = make(identity=provider.identity)
    again.start()
    clock.advance(0.2)
    assert [e.data["status"] for e in third.events if e.kind == EventKind.RECEIPT] == ["delivered", "read"]
    for event in third.events:
        if event.ack:
            event.ack()
            event.ack()  # twice is harmless
    assert simulator_server.pending(provider.store_dir, provider.session_key) == []
    again.stop()
    fourth, fourth_events = make(identity=provider.identity)
    fourth.start()
    clock.advance(10)
    assert fourth_events.kinds() == [EventKind.CONNECTED]


def test_an_acknowledged_delivered_receipt_still_leads_to_the_read_one_after_a_crash(make, linked, clock):
    provider, events = linked
    message_id = provider.send(PHONE, TEXT)
    clock.advance(1)
    delivered = events.events[-1]
    assert delivered.data == {**delivered.data, "ids": [message_id], "status": "delivered"}
    delivered.ack()  # committed and acknowledged; the host dies before the read receipt
    provider.stop()
    elsewhere, later = make(identity=provider.identity)
    elsewhere.start()
    clock.advance(0.2)
    assert later.kinds() == [EventKind.CONNECTED]  # the read receipt is not due yet: it keeps its time
    clock.advance(2)
    assert [(e.data["ids"], e.data["status"]) for e in later.events if e.kind == EventKind.RECEIPT] == [
        ([message_id], "read")]


def test_an_inbound_message_waits_for_an_offline_device_and_is_redelivered_until_acknowledged(make, linked, clock):
    from whatsapp.providers import simulator_outbox, simulator_server

    provider, events = linked
    provider.simulate_disconnect()
    message_id = provider.simulate_inbound("+44 20 7946 0000", "while you were away")
    assert events.of(EventKind.MESSAGE) == []
    assert [r["id"] for r in simulator_outbox.read_inbound(provider.store_dir)] == [message_id]
    clock.advance(5)  # reconnects by itself
    assert events.kinds()[-2:] == [EventKind.CONNECTED, EventKind.MESSAGE]
    first = events.events[-1]
    assert first.data["id"] == message_id and first.data["text"] == "while you were away"

    media_id = provider.simulate_inbound("+44 20 7946 0000", type="image", media=b"\x89PNG", mimetype="image/png")
    provider.stop()  # the host dies before committing either
    elsewhere, later = make(identity=provider.identity)
    elsewhere.start()
    clock.advance(0.2)
    redelivered = [e for e in later.events if e.kind == EventKind.MESSAGE]
    assert [e.data["id"] for e in redelivered] == [message_id, media_id]
    assert redelivered[1].data["media"] == b"\x89PNG"  # bytes again, as the first delivery had them
    redelivered[0].ack()
    assert [i["id"] for _, i in simulator_server.pending(provider.store_dir, provider.session_key)] == [media_id]


def test_an_unlinked_device_loses_what_whatsapp_kept_for_it(make, linked, clock):
    from whatsapp.providers import simulator_server

    provider, events = linked
    provider.send(PHONE, TEXT)
    provider.simulate_inbound(PHONE, "hi")
    assert len(simulator_server.pending(provider.store_dir, provider.session_key)) == 2
    provider.simulate_logout()
    assert simulator_server.pending(provider.store_dir, provider.session_key) == []


def test_the_server_journal_is_compacted_and_writers_follow_the_new_file(tmp_path):
    from whatsapp.providers import simulator_server

    store, key = str(tmp_path), "t_acme:1"
    names = [simulator_server.put(store, key, {"kind": "receipt", "id": f"SIM{i}", "chat": "c", "status": "read",
                                               "due": i}) for i in range(simulator_server.COMPACT_MIN_RECORDS)]
    for name in names[1:]:
        simulator_server.ack(store, key, name)
    journal = os.path.join(simulator_server.session_dir(store, key), simulator_server.JOURNAL)
    before = os.path.getsize(journal)
    assert [n for n, _ in simulator_server.compact(store, key)] == [names[0]]
    assert os.path.getsize(journal) < before / 100
    # This process's open descriptor still points at the replaced file: the next record must reach the new one.
    late = simulator_server.put(store, key, {"kind": "message", "id": "SIMLATE", "due": 10**10,
                                             "data": {"id": "SIMLATE", "media": b"\x00\x01"}})
    pending = simulator_server.pending(store, key)
    assert [n for n, _ in pending] == [names[0], late] and pending[1][1]["data"]["media"] == b"\x00\x01"
    simulator_server.forget(store, key)
    assert simulator_server.pending(store, key) == []
    simulator_server.put(store, key, {"kind": "message", "id": "SIMAFTER", "due": 1, "data": {}})
    assert [i["id"] for _, i in simulator_server.pending(store, key)] == ["SIMAFTER"]


def test_chat_presence_is_what_the_contacts_phone_shows(make, linked, clock, tmp_path):
    store = str(tmp_path / "store")
    provider, events = linked
    assert chat_presence_seen(store, "t_acme:1") == []
    provider.send_chat_presence(PHONE, "composing")
    provider.send_chat_presence("6281234567890@s.whatsapp.net", "composing")
    seen = {entry["chat"]: entry for entry in chat_presence_seen(store, "t_acme:1", now=clock.wall())}
    assert seen[f"{DIGITS}@s.whatsapp.net"]["typing"] is True and seen["6281234567890@s.whatsapp.net"]["typing"]
    provider.send_chat_presence(PHONE, "paused")
    seen = {entry["chat"]: entry for entry in chat_presence_seen(store, "t_acme:1", now=clock.wall())}
    assert (seen[f"{DIGITS}@s.whatsapp.net"]["state"], seen[f"{DIGITS}@s.whatsapp.net"]["typing"]) == ("paused", False)
    # WhatsApp stops showing "typing…" by itself when no new composing comes for a while.
    later = clock.wall() + 26
    assert chat_presence_seen(store, "t_acme:1", now=later)[0]["typing"] is False
    assert chat_presence_seen(store, "t_acme:2") == []  # another session's chats are its own
    assert events.events == []  # nothing for the host: presence is no message

    for to, state, code in ((PHONE, "recording", "invalid_presence"), ("not a number", "composing",
                                                                       "invalid_recipient")):
        with pytest.raises(ProviderError) as exc:
            provider.send_chat_presence(to, state)
        assert exc.value.code == code
    fresh, _ = make("t_acme:9")
    with pytest.raises(ProviderError) as exc:
        fresh.send_chat_presence(PHONE, "composing")
    assert exc.value.code == "not_connected"
