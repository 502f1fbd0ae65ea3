"""Crash safety of the sending pipeline, with real processes: daphne, a Celery worker and a `whatsapp` session host
on the simulator (tests/live.py).

200 text messages go in through the HTTP API while the `whatsapp` worker is killed with SIGKILL twice, each time
replaced by a new one. The new host takes the session over once the dead host's lease expires (6 s here instead
of 45), resumes the linked device from its store, and the sweeper re-dispatches what the dead host left queued
and reports what it left half-sent. What the simulated WhatsApp accepted is counted from its outbox log (one line
per accepted send, written before the host records it), which survives the kills.

Every message must end sent/delivered/read or failed with a reason; none may be lost; a message WhatsApp
received is never left queued (it would be sent again); duplicates (outbox lines beyond one per message) at most
one per kill.
"""
import collections
import logging
import os
import secrets
import signal
import socket
import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.host.models import SessionLease
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import drain as sending
from whatsapp.models import Message, WhatsAppSession
from whatsapp.providers import simulator_outbox

from . import live

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 200
KILLS = 2
LEASE_TTL_SECONDS = 6
PHONE = "+14155550123"
TO = "+6281234567890"
SESSION = "crash-test"
WAIT = 90.0  # generous: the machine is shared and slow; nothing here is a timing assertion
S = Message.Status
FINAL = {S.SENT, S.DELIVERED, S.READ, S.FAILED}


@pytest.fixture(autouse=True)
def _quiet_http_client_log():
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would bury the figures


@pytest.fixture
def live_whatsapp(monkeypatch):
    # live_system copies os.environ into every process it starts (and into the hosts started later here).
    monkeypatch.setenv("WHATSAPP_LEASE_TTL_SECONDS", str(LEASE_TTL_SECONDS))
    monkeypatch.setenv("WHATSAPP_PACING_ENABLED", "false")
    monkeypatch.setenv("WHATSAPP_RATE_LIMIT_PER_COMPANY", "-1")
    return {}


class Api:
    def __init__(self, base_url, raw_key):
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {raw_key}"}

    def client(self):
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30.0)


def data(response, status):
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()["data"]


def session_status(client):
    return data(client.get(f"/api/v1/sessions/{SESSION}"), 200)["status"]


def link_session(api):
    with api.client() as client:
        data(client.post("/api/v1/sessions", json={"name": SESSION, "label": "Crash test"}), 201)
        data(client.post(f"/api/v1/sessions/{SESSION}/start", json={"use_pairing_code": False}), 202)
        live.wait_until(lambda: session_status(client) == "qr", timeout=WAIT, interval=0.2,
                        message="the session to show a QR code")
        data(client.post(f"/api/v1/test-helpers/sessions/{SESSION}/scan",
                         json={"phone": PHONE, "push_name": "Crash Test"}), 202)
        live.wait_until(lambda: session_status(client) == "connected", timeout=WAIT, interval=0.2,
                        message="the session to connect")


class Senders:
    """Client threads posting the messages in order, as far as `allow(n)` lets them. A 409 session_not_connected
    (the new host is resuming the device) or a dropped connection is retried with the same Idempotency-Key, so a
    retry can never make a second message."""

    def __init__(self, api, texts, threads=4):
        self.api = api
        self.texts = texts
        self.allowed = 0
        self.next_index = 0
        self.accepted = {}  # index -> message id
        self.retries = collections.Counter()
        self.errors = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def allow(self, n):
        with self._cond:
            self.allowed = max(self.allowed, n)
            self._cond.notify_all()

    def _take(self):
        with self._cond:
            while self.next_index >= self.allowed and self.next_index < len(self.texts):
                self._cond.wait(0.5)
            if self.next_index >= len(self.texts):
                return None
            index, self.next_index = self.next_index, self.next_index + 1
            return index

    def _run(self):
        with self.api.client() as client:
            while (index := self._take()) is not None:
                try:
                    self.accepted[index] = self._post(client, index)
                except Exception as exc:  # reported by join(); the other threads go on
                    self.errors.append(f"message {index}: {exc!r}")

    def _post(self, client, index):
        deadline = time.monotonic() + WAIT
        while True:
            try:
                response = client.post("/api/v1/messages", json={"session": SESSION, "to": TO, "type": "text",
                                                                 "text": self.texts[index]},
                                       headers={"Idempotency-Key": f"crash-{index}"})
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            else:
                if response.status_code in (200, 202):
                    return response.json()["data"]["id"]
                body = response.json()
                reason = body.get("error", {}).get("code") if isinstance(body, dict) else None
                if response.status_code != 409 or reason != "session_not_connected":
                    raise AssertionError(f"POST answered {response.status_code}: {response.text}")
            self.retries[reason] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"not accepted within {WAIT:.0f} s (last: {reason})")
            time.sleep(0.1)

    def sent_at_least(self, system, count):
        """A wait predicate: WhatsApp has `count` messages; a sender's failure ends the wait at once."""
        assert not self.errors, self.errors
        return len(outbox(system)) >= count

    def join(self):
        for thread in self._threads:
            thread.join(timeout=WAIT)
        assert not any(thread.is_alive() for thread in self._threads), "a sender thread hangs"
        assert not self.errors, self.errors
        return self.accepted


def outbox(system):
    return simulator_outbox.read(system.env["WHATSAPP_STORE_DIR"])


def kill_whatsapp(system):
    """SIGKILL the host's whole process group: no warm shutdown, no lease release, no acks."""
    process = system.whatsapp
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait(timeout=30)
    system.processes.remove(process)


def start_whatsapp(system, generation):
    """A new `whatsapp` worker with the same command line, under a new Celery name (to ping it)."""
    name = f"whatsapp-{secrets.token_hex(4)}@{socket.gethostname()}"
    argv = list(system.whatsapp.argv)
    argv[argv.index("-n") + 1] = name
    process = live.Process(f"whatsapp-{generation}", argv, env=system.env, log_dir=system.log_dir).start()
    system.whatsapp, system.whatsapp_worker_name = process, name
    system.processes.append(process)
    system._wait_for_worker(name)
    return process


def lease_holder(tenant, session_id):
    lease = SessionLease.objects.filter(schema_name=tenant.schema_name, session_id=session_id).first()
    return lease.host_id if lease and lease.lease_expires_at and lease.lease_expires_at > timezone.now() else ""


def host_pid(host_id):
    return int(host_id.split(":")[1]) if host_id.count(":") >= 2 else None


def connected_at(tenant, session_id):
    with tenant_context(tenant):
        return WhatsAppSession.objects.get(pk=session_id).connected_at


def wait_for_takeover(tenant, session_id, process, connected_before):
    """The new process holds the lease and the session it resumed has connected since `connected_before` (the
    row still says connected from the dead host until the new one starts the client)."""
    def taken_over():
        if host_pid(lease_holder(tenant, session_id)) != process.popen.pid:
            return False
        with tenant_context(tenant):
            session = WhatsAppSession.objects.get(pk=session_id)
        return session.status == WhatsAppSession.Status.CONNECTED and session.connected_at > connected_before

    live.wait_until(taken_over, timeout=WAIT, interval=0.2, message="the new host to take the session over")


def status_counts(tenant):
    with tenant_context(tenant):
        return collections.Counter(Message.objects.filter(direction=Message.Direction.OUT)
                                   .values_list("status", flat=True))


def settle(tenant):
    """Let the pipeline finish, and whenever it has been still for a few seconds with messages queued or sending,
    run the sweeper as if its deadlines had passed (RETRY_AFTER for queued, STUCK_SENDING for sending): what is
    still then was left by a dead host. Returns how many sweeps it took."""
    deadline = time.monotonic() + 2 * WAIT
    last, still_since, sweeps = None, time.monotonic(), 0
    while True:
        counts = status_counts(tenant)
        if counts[S.QUEUED] + counts[S.SENDING] == 0:
            return sweeps
        if time.monotonic() > deadline:
            raise AssertionError(f"messages still queued or sending after {sweeps} sweeps: {dict(counts)}")
        if counts != last:
            last, still_since = counts, time.monotonic()
        elif time.monotonic() - still_since > 4:
            ahead = timezone.now() + sending.STUCK_SENDING + sending.RETRY_AFTER + timedelta(minutes=1)
            with tenant_context(tenant):
                messaging.sweep_queued(now=ahead)
            sweeps += 1
            still_since = time.monotonic()
        time.sleep(0.3)


def test_two_sigkills_of_the_session_host_lose_nothing_and_duplicate_at_most_once_each(
        named, plans, live_system):
    from accounts.actions import create_api_key

    tenant = named.acme
    # Unlimited messages per minute (the plan counts through the subscription): no rate limit in the way.
    tenant.plan = plans["enterprise"]
    tenant.save(update_fields=["plan"])
    Subscription.objects.filter(tenant=tenant).update(plan=plans["enterprise"])
    _, raw = create_api_key(user=named.alice, tenant=tenant, name="crash test")
    api = Api(live_system.url, raw)
    link_session(api)
    with tenant_context(tenant):
        session_id = WhatsAppSession.objects.get(name=SESSION).pk

    run = secrets.token_hex(3)
    texts = [f"crash-safety {run} #{i:03d}" for i in range(MESSAGES)]
    senders = Senders(api, texts)
    kills = []

    # Kill 1: once WhatsApp has taken some messages, with more still being posted and sent.
    senders.allow(80)
    live.wait_until(lambda: senders.sent_at_least(live_system, 30), timeout=WAIT, interval=0.02,
                    message="30 messages to reach the simulator")
    kill_whatsapp(live_system)
    kills.append({"accepted": len(senders.accepted), "outbox": len(outbox(live_system))})
    before = connected_at(tenant, session_id)
    senders.allow(150)  # posted while no host runs the session: their commands go to the dead host's queue
    second = start_whatsapp(live_system, 2)
    wait_for_takeover(tenant, session_id, second, before)
    with tenant_context(tenant):  # what the dead host never got: dispatched again now rather than in a minute
        messaging.sweep_queued(now=timezone.now() + sending.RETRY_AFTER)

    # Kill 2: once the second host is sending.
    resumed_at = len(outbox(live_system))
    senders.allow(MESSAGES)
    live.wait_until(lambda: senders.sent_at_least(live_system, resumed_at + 15), timeout=WAIT, interval=0.02,
                    message="the second host to send")
    kill_whatsapp(live_system)
    kills.append({"accepted": len(senders.accepted), "outbox": len(outbox(live_system))})
    before = connected_at(tenant, session_id)
    third = start_whatsapp(live_system, 3)
    wait_for_takeover(tenant, session_id, third, before)

    accepted = senders.join()
    sweeps = settle(tenant)

    # --- what the database says --------------------------------------------------------------------------
    with tenant_context(tenant):
        rows = {m.text: m for m in Message.objects.filter(direction=Message.Direction.OUT)}
    assert len(accepted) == MESSAGES and len(set(accepted.values())) == MESSAGES
    assert len(rows) == MESSAGES and set(rows) == set(texts), "a message was lost or made twice"
    assert {rows[text].pk for text in texts} == set(accepted.values())
    statuses = collections.Counter(m.status for m in rows.values())
    assert set(statuses) <= FINAL, statuses
    failed = [m for m in rows.values() if m.status == S.FAILED]
    assert all(m.failure_reason for m in failed), [m.pk for m in failed if not m.failure_reason]

    # --- what WhatsApp received --------------------------------------------------------------------------
    received = outbox(live_system)
    assert {line["session"] for line in received} == {f"{tenant.schema_name}:{session_id}"}
    copies = collections.Counter(line["text"] for line in received)
    assert set(copies) <= set(texts), set(copies) - set(texts)
    for text in copies:
        assert rows[text].status != S.QUEUED, f"{text!r} reached WhatsApp but is queued to be sent again"
    by_provider_id = {line["id"]: line["text"] for line in received}
    for message in rows.values():
        if message.status in (S.SENT, S.DELIVERED, S.READ):
            # Recorded as sent only with the id WhatsApp gave for this very message.
            assert by_provider_id.get(message.provider_message_id) == message.text, message.pk
    for message in failed:
        if message.text in copies:  # WhatsApp has it although the row says failed: only a host lost mid-send
            assert message.failure_reason.startswith("host_lost"), (message.pk, message.failure_reason)
    duplicates = len(received) - len(copies)

    never_sent = [m for m in failed if m.text not in copies]
    print(f"\ncrash safety: {MESSAGES} messages, {KILLS} SIGKILLs of the whatsapp worker "
          f"(at accepted/outbox {kills[0]['accepted']}/{kills[0]['outbox']} and "
          f"{kills[1]['accepted']}/{kills[1]['outbox']}); sweeps {sweeps}; POST retries {dict(senders.retries)}")
    print(f"final statuses {dict(statuses)}; WhatsApp received {len(received)} sends of {len(copies)} distinct "
          f"messages; duplicates {duplicates}; failed {len(failed)} "
          f"({len(failed) - len(never_sent)} received by WhatsApp, {len(never_sent)} never sent: "
          f"{sorted(collections.Counter(m.failure_reason.split(':')[0] for m in never_sent).items())})")
    assert len(kills) == KILLS
    assert duplicates <= KILLS, f"{duplicates} duplicates after {KILLS} kills"


def test_the_outbox_reader_skips_a_record_cut_short(tmp_path):
    simulator_outbox.record(str(tmp_path), session_key="t_x:1", message_id="SIM1", chat="1@s.whatsapp.net",
                            type="text", text="one")
    simulator_outbox.record(str(tmp_path), session_key="t_x:1", message_id="SIM2", chat="1@s.whatsapp.net",
                            type="text", text="two\nlines")
    with open(simulator_outbox.outbox_path(str(tmp_path)), "ab") as f:
        f.write(b'{"session":"t_x:1","id":"SIM3"')  # a write that never finished
    assert [(r["id"], r["text"]) for r in simulator_outbox.read(str(tmp_path))] == [("SIM1", "one"),
                                                                                   ("SIM2", "two\nlines")]


def test_the_lease_ttl_comes_from_the_environment_and_the_heartbeat_is_a_third(monkeypatch):
    from whatsapp.host import leases

    monkeypatch.setenv("WHATSAPP_LEASE_TTL_SECONDS", "6")
    assert leases._lease_ttl_seconds() == 6.0
    monkeypatch.delenv("WHATSAPP_LEASE_TTL_SECONDS")
    assert leases._lease_ttl_seconds() == 10.0
    assert abs((leases.HEARTBEAT_INTERVAL * 3 - leases.LEASE_TTL).total_seconds()) < 0.001
    for bad in ("soon", "1"):
        monkeypatch.setenv("WHATSAPP_LEASE_TTL_SECONDS", bad)
        with pytest.raises(ValueError):
            leases._lease_ttl_seconds()
