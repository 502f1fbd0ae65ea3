"""A campaign across a SIGKILL of the session host, with real processes (tests/live.py): daphne, a Celery worker
and a `whatsapp` session host on the simulator.

RECIPIENTS recipients go out from one number, fed by the campaign feeder (whatsapp.campaigns.feeder.feed_all, the
beat task's body) run from this process on a manual clock that moves past the campaign's max gap every round, so
the number's queue is kept at the window. Midway the host is SIGKILLed (no warm shutdown, no lease release); the
feeder keeps going (what it queues goes to the dead host's queue, the window holds it back), a new host takes the
session over once the lease expires, and the sweeper re-dispatches what the dead host left queued.

At the end: the campaign finished; every recipient handed to the sending queue once (one Message row per phone,
with the Idempotency-Key campaign-<campaign>-<recipient>); WhatsApp (the simulator's outbox log, which survives the
kill) received each recipient's message exactly once; none skipped, none failed. A message the dead host had
claimed but not yet given to WhatsApp at the kill would be failed host_lost by design (never sent twice): the kill
is timed when the host has none claimed, and if the race is lost anyway that recipient is reported, not hidden.
"""
import collections
import logging
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import Subscription
from whatsapp.campaigns import actions as campaigns
from whatsapp.campaigns import feeder
from whatsapp.campaigns.models import AudienceContact, Campaign, CampaignRecipient, MessageTemplate
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import drain as sending
from whatsapp.models import Message, WhatsAppSession

from . import live
from .test_send_crash_safety import (
    LEASE_TTL_SECONDS,
    SESSION,
    Api,
    connected_at,
    kill_whatsapp,
    link_session,
    outbox,
    start_whatsapp,
    wait_for_takeover,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECIPIENTS = 30
KILL_AFTER = 10  # messages WhatsApp has when the host is killed
MIN_GAP, MAX_GAP = 5, 8  # seconds of the manual clock; each round moves it past MAX_GAP
WAIT = 90.0
S, R = Message.Status, CampaignRecipient.Status


@pytest.fixture(autouse=True)
def _quiet_http_client_log():
    logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture
def live_whatsapp(monkeypatch):
    monkeypatch.setenv("WHATSAPP_LEASE_TTL_SECONDS", str(LEASE_TTL_SECONDS))
    monkeypatch.setenv("WHATSAPP_PACING_ENABLED", "false")
    monkeypatch.setenv("WHATSAPP_RATE_LIMIT_PER_COMPANY", "-1")
    return {}


def phone(n):
    return f"+62812555{n:04d}"


def out_statuses(tenant):
    with tenant_context(tenant):
        return collections.Counter(Message.objects.filter(direction=Message.Direction.OUT)
                                   .values_list("status", flat=True))


class Feeder:
    """The feeder's rounds on a manual clock, plus the sweeper whenever the pipeline has been still for a few seconds
    with messages queued (what a dead host left: its deadlines taken as passed, as the beat sweeper would later)."""

    def __init__(self, tenant):
        self.tenant = tenant
        self.clock = timezone.now()
        self.rounds = self.sweeps = 0
        self._last, self._still_since = None, time.monotonic()

    def round(self):
        feeder.feed_all(now=self.clock)
        self.clock += timedelta(seconds=MAX_GAP + 1)
        self.rounds += 1
        counts = out_statuses(self.tenant)
        if counts != self._last:
            self._last, self._still_since = counts, time.monotonic()
        elif counts[S.QUEUED] + counts[S.SENDING] and time.monotonic() - self._still_since > 4:
            ahead = timezone.now() + sending.STUCK_SENDING + sending.RETRY_AFTER + timedelta(minutes=1)
            with tenant_context(self.tenant):
                messaging.sweep_queued(now=ahead)
            self.sweeps += 1
            self._still_since = time.monotonic()
        time.sleep(0.25)


def campaign_status(tenant, pk):
    with tenant_context(tenant):
        return Campaign.objects.get(pk=pk).status


def test_a_campaign_survives_a_sigkill_of_the_session_host_each_recipient_messaged_once(named, plans, live_system):
    from accounts.actions import create_api_key

    tenant = named.acme
    tenant.plan = plans["enterprise"]
    tenant.save(update_fields=["plan"])
    Subscription.objects.filter(tenant=tenant).update(plan=plans["enterprise"])
    _, raw = create_api_key(user=named.alice, tenant=tenant, name="campaign crash")
    link_session(Api(live_system.url, raw))
    with tenant_context(tenant):
        session_id = WhatsAppSession.objects.get(name=SESSION).pk
        AudienceContact.objects.bulk_create([AudienceContact(phone=phone(i), name=f"Guest {i}", tags=["fair"],
                                                             fields={"seat": f"S{i:03d}"})
                                             for i in range(RECIPIENTS)])
        template = MessageTemplate.objects.create(name="invite", body="Hi {{first_name}}, seat {{field.seat}}.")
        campaign = campaigns.create_campaign(tenant, acting_user=named.alice, name="Fair", template=template.pk,
                                             audience={"tags": ["fair"]}, sessions=[SESSION],
                                             min_gap_seconds=MIN_GAP, max_gap_seconds=MAX_GAP, start=True)
        assert campaign.status == Campaign.Status.RUNNING and campaign.planned_count == RECIPIENTS
    key = f"{tenant.schema_name}:{session_id}"
    rounds = Feeder(tenant)
    started = time.monotonic()

    def mine():
        return [line for line in outbox(live_system) if line["session"] == key]

    # --- the kill: midway, at a moment the host has no message claimed (the race is reported below) ------------
    deadline = time.monotonic() + WAIT
    while True:
        rounds.round()
        if len(mine()) >= KILL_AFTER and out_statuses(tenant)[S.SENDING] == 0:
            kill_whatsapp(live_system)
            break
        assert time.monotonic() < deadline, f"WhatsApp got {len(mine())} messages, not {KILL_AFTER}"
    killed_at = len(mine())
    with tenant_context(tenant):
        half_sent = set(Message.objects.filter(direction=Message.Direction.OUT, status=S.SENDING)
                        .values_list("pk", flat=True))
    assert killed_at < RECIPIENTS, "the campaign was over before the kill"

    # --- the feeder goes on; another host takes the session over ------------------------------------------------
    for _ in range(3):  # while no host runs the session: the window holds the queue to what the dead host had
        rounds.round()
    orphaned = out_statuses(tenant)[S.QUEUED]  # queued for the dead host: the takeover and the sweeper send them
    assert 0 < orphaned <= feeder.WINDOW, orphaned
    before = connected_at(tenant, session_id)
    second = start_whatsapp(live_system, 2)
    wait_for_takeover(tenant, session_id, second, before)
    with tenant_context(tenant):  # what the dead host never got: dispatched now rather than in a minute
        messaging.sweep_queued(now=timezone.now() + sending.RETRY_AFTER)

    deadline = time.monotonic() + WAIT
    while campaign_status(tenant, campaign.pk) != Campaign.Status.FINISHED:
        assert time.monotonic() < deadline, (f"the campaign is {campaign_status(tenant, campaign.pk)} after the "
                                             f"takeover; messages {dict(out_statuses(tenant))}")
        rounds.round()
    took = time.monotonic() - started

    # --- the campaign's rows and the messages they made ---------------------------------------------------------
    with tenant_context(tenant):
        recipients = list(CampaignRecipient.objects.filter(campaign=campaign).select_related("message"))
        messages = list(Message.objects.filter(direction=Message.Direction.OUT))
    assert len(recipients) == RECIPIENTS
    assert collections.Counter(r.status for r in recipients) == {R.QUEUED: RECIPIENTS}, "a recipient was skipped"
    assert collections.Counter(m.to_phone for m in messages) == {phone(i): 1 for i in range(RECIPIENTS)}
    assert {m.idempotency_key for m in messages} == {f"campaign-{campaign.pk}-{r.pk}" for r in recipients}
    assert {r.message_id for r in recipients} == {m.pk for m in messages}

    # --- what WhatsApp received: each recipient's message once --------------------------------------------------
    copies = collections.Counter(line["text"] for line in mine())
    lost = [r for r in recipients if r.message.pk in half_sent and copies[r.text] == 0]
    print(f"\ncampaign crash: {RECIPIENTS} recipients, SIGKILL of the host with {killed_at} sent; "
          f"{len(half_sent)} claimed by the dead host at the kill ({len(lost)} never reached WhatsApp), {orphaned} "
          f"queued while no host ran; "
          f"{rounds.rounds} feeder rounds, {rounds.sweeps} sweeps; finished in {took:.1f} s; final statuses "
          f"{dict(collections.Counter(m.status for m in messages))}")
    for recipient in lost:  # only the lost race of the kill: failed host_lost, never sent twice
        assert recipient.message.status == S.FAILED and recipient.message.failure_reason.startswith("host_lost")
    assert sorted(copies.values()) == [1] * (RECIPIENTS - len(lost)), {t: n for t, n in copies.items() if n != 1}
    assert set(copies) == {r.text for r in recipients if r not in lost}
    assert lost == [], f"the kill caught {len(lost)} message(s) claimed but not sent: {lost}"
    by_id = {line["id"]: line["text"] for line in mine()}
    for recipient in recipients:
        assert recipient.message.status in (S.SENT, S.DELIVERED, S.READ), (recipient.phone, recipient.message.status)
        assert by_id.get(recipient.message.provider_message_id) == recipient.text, recipient.phone
