"""WhatsApp's offline queue across a SIGKILL of the session host, with real processes (tests/live.py): daphne, a
Celery worker and a `whatsapp` session host on the simulator.

Messages go out and contacts' messages come in through the HTTP API while the host is killed with SIGKILL, at a
moment when most sent messages still wait for their delivery or read receipt and inbound messages are on their
way; more come for the device while no host runs it. The simulated WhatsApp keeps what it owes the device
(simulator_server) until the host acknowledges it after committing it, so the next host, resuming the device,
gets every receipt and message again: none is lost, and each is stored once. Then the window between commit and
acknowledgement is replayed on purpose (items already stored put back on WhatsApp's side, as a kill between the
two leaves them) and a reconnect redelivers them: the database does not change.

Before the offline queue, receipts owed at a kill were lost for good: the crash test saw 190 of 200 messages stay
`sent`, and this scenario 60 of 60.
"""
import collections
import secrets
import threading
import time

import httpx
import pytest
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.models import Message, WhatsAppSession
from whatsapp.providers import simulator, simulator_outbox, simulator_server

from . import live
from .test_send_crash_safety import (
    SESSION,
    Api,
    Senders,
    connected_at,
    data,
    kill_whatsapp,
    link_session,
    outbox,
    settle,
    start_whatsapp,
    wait_for_takeover,
)

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 60
INBOUND = 40
OFFLINE = 10  # inbound messages WhatsApp takes for the device while no host runs it
REPLAYED = 5
WAIT = 90.0
S = Message.Status


@pytest.fixture
def live_whatsapp(monkeypatch):
    monkeypatch.setenv("WHATSAPP_LEASE_TTL_SECONDS", "6")
    monkeypatch.setenv("WHATSAPP_PACING_ENABLED", "false")
    monkeypatch.setenv("WHATSAPP_RATE_LIMIT_PER_COMPANY", "-1")
    monkeypatch.setenv("WHATSAPP_RECONNECT_DELAY", "300")
    # Receipts come 2 s and 4 s after a send: most are still owed when the host is killed.
    monkeypatch.setenv("WHATSAPP_SIMULATOR_DELIVERED_SECONDS", "2")
    monkeypatch.setenv("WHATSAPP_SIMULATOR_READ_SECONDS", "4")
    return {}


class Contacts:
    """A thread posting INBOUND simulated messages from contacts; a 409 (the session is between hosts) is tried
    again until a host takes it. Which of them reached WhatsApp is read from the simulator's inbound log."""

    def __init__(self, api, texts):
        self.api, self.texts = api, texts
        self.posted = 0
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with self.api.client() as client:
            for i, text in enumerate(self.texts):
                deadline = time.monotonic() + WAIT
                while True:
                    try:
                        response = client.post(f"/api/v1/test-helpers/sessions/{SESSION}/inbound",
                                               json={"from": f"+62812345678{i % 10:02d}", "text": text})
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code == 202:
                        break
                    if response is not None and response.status_code != 409:
                        self.errors.append(f"inbound {i}: {response.status_code} {response.text}")
                        return
                    if time.monotonic() > deadline:
                        self.errors.append(f"inbound {i} not accepted within {WAIT:.0f} s")
                        return
                    time.sleep(0.1)
                self.posted += 1
                time.sleep(0.03)

    def join(self):
        self.thread.join(timeout=2 * WAIT)
        assert not self.thread.is_alive(), "the inbound poster hangs"
        assert not self.errors, self.errors


def out_rows(tenant):
    with tenant_context(tenant):
        return {m.provider_message_id: m for m in Message.objects.filter(direction=Message.Direction.OUT)}


def inbound_ids(tenant):
    with tenant_context(tenant):
        return collections.Counter(Message.objects.filter(direction=Message.Direction.IN)
                                   .values_list("provider_message_id", flat=True))


def test_receipts_and_inbound_messages_survive_a_sigkill_of_the_host_and_are_stored_once(named, plans, live_system):
    from accounts.actions import create_api_key

    tenant = named.acme
    tenant.plan = plans["enterprise"]
    tenant.save(update_fields=["plan"])
    Subscription.objects.filter(tenant=tenant).update(plan=plans["enterprise"])
    _, raw = create_api_key(user=named.alice, tenant=tenant, name="offline queue")
    api = Api(live_system.url, raw)
    link_session(api)
    with tenant_context(tenant):
        session_id = WhatsAppSession.objects.get(name=SESSION).pk
    key = f"{tenant.schema_name}:{session_id}"
    store = live_system.env["WHATSAPP_STORE_DIR"]

    run = secrets.token_hex(3)
    senders = Senders(api, [f"offline-queue {run} out #{i:03d}" for i in range(MESSAGES)])
    contacts = Contacts(api, [f"offline-queue {run} in #{i:03d}" for i in range(INBOUND)])
    senders.allow(MESSAGES)

    def mine(records):
        return [r for r in records if r["session"] == key]

    # The kill: every message has reached WhatsApp (most receipts still owed), inbound messages are on their way.
    def ready():
        assert not contacts.errors, contacts.errors
        return (senders.sent_at_least(live_system, MESSAGES)
                and len(mine(simulator_outbox.read_inbound(store))) >= INBOUND // 3)

    live.wait_until(ready, timeout=WAIT, interval=0.02, message="the sends and a third of the inbound messages")
    kill_whatsapp(live_system)
    rows = out_rows(tenant)
    owed_at_kill = sum(1 for m in rows.values() if m.status != S.READ)
    inbound_at_kill = len(mine(simulator_outbox.read_inbound(store)))
    stored_at_kill = sum(inbound_ids(tenant).values())
    for i in range(OFFLINE):  # contacts write while the device is offline: WhatsApp keeps them
        simulator.accept_inbound(store, key, simulator.inbound_data("+6281234567899", f"offline-queue {run} #{i}"))
    before = connected_at(tenant, session_id)
    second = start_whatsapp(live_system, 2)
    taken_at = time.monotonic()
    wait_for_takeover(tenant, session_id, second, before)
    takeover_s = time.monotonic() - taken_at
    senders.join()
    contacts.join()
    settle(tenant)

    # --- every receipt and every inbound message WhatsApp had, once --------------------------------------------
    accepted = {r["id"] for r in outbox(live_system)}
    received = {r["id"] for r in mine(simulator_outbox.read_inbound(store))}

    def settled():
        rows = out_rows(tenant)
        return (all(rows[i].status == S.READ for i in accepted if i in rows)
                and set(inbound_ids(tenant)) >= received)

    try:
        live.wait_until(settled, timeout=WAIT, interval=0.3, message="every receipt and inbound message")
    except TimeoutError:
        pass  # measured and asserted below
    rows = out_rows(tenant)
    unresolved = sorted(i for i in accepted if i in rows and rows[i].status != S.READ)
    stored = inbound_ids(tenant)
    lost_inbound = received - set(stored)
    print(f"\noffline queue: SIGKILL with {owed_at_kill} of {len(rows)} messages owed a receipt and "
          f"{inbound_at_kill - stored_at_kill} of {inbound_at_kill} inbound messages accepted by WhatsApp not yet "
          f"stored; takeover {takeover_s:.1f} s; after it: receipts lost {len(unresolved)}, inbound lost "
          f"{len(lost_inbound)} of {len(received)}, inbound stored twice "
          f"{sum(1 for n in stored.values() if n > 1)}")
    assert unresolved == [], f"{len(unresolved)} messages never got their receipts: {unresolved[:5]}"
    assert lost_inbound == set(), lost_inbound
    assert set(stored) == received and set(stored.values()) == {1}, stored
    # All acknowledged once committed (each just after its commit: waited for, not read at once).
    live.wait_until(lambda: simulator_server.pending(store, key) == [], timeout=WAIT, interval=0.2,
                    message="every item to be acknowledged")

    # --- the window between commit and acknowledgement, replayed: redelivered, stored once ---------------------
    replay_in = sorted(received)[:REPLAYED]
    with tenant_context(tenant):
        for message in Message.objects.filter(direction=Message.Direction.IN, provider_message_id__in=replay_in):
            simulator_server.put(store, key, {"kind": "message", "id": message.provider_message_id, "due": 0,
                                              "data": {"id": message.provider_message_id, "chat": message.chat_jid,
                                                       "sender": message.sender_jid,
                                                       "sender_phone": message.from_phone, "from_me": False,
                                                       "timestamp": int(time.time()), "type": "text",
                                                       "text": message.text}})
    for message_id in sorted(accepted)[:REPLAYED]:
        for status in ("delivered", "read"):
            simulator_server.put(store, key, {"kind": "receipt", "id": message_id, "chat": rows[message_id].chat_jid,
                                              "status": status, "due": 0})
    assert len(simulator_server.pending(store, key)) == 3 * REPLAYED
    with api.client() as client:
        data(client.post(f"/api/v1/test-helpers/sessions/{SESSION}/disconnect"), 202)
    live.wait_until(lambda: simulator_server.pending(store, key) == [], timeout=WAIT, interval=0.2,
                    message="the redelivered items to be acknowledged")
    assert inbound_ids(tenant) == stored
    assert {i: m.status for i, m in out_rows(tenant).items()} == {i: m.status for i, m in rows.items()}
