"""Per-number pacing (whatsapp.messaging.pacing) and its place in the sending pipeline (whatsapp.messaging.drain's claim, the sweeper):
successive slots under a minimum interval plus jitter, a daily cap that moves messages to the next UTC day, the
warm-up cap of a new number, the tenant's policy over the installation's defaults, pacing off, and queued messages
that wait their turn without being failed by the attempt cap.

Deterministic: every call gets its `now`, jitter is 0 or drawn from a seeded generator, and the pipeline tests
freeze django.utils.timezone.now on a clock they move by hand.
"""
import random
from datetime import UTC, datetime, timedelta

import django.utils.timezone
import pytest
from django_tenants.utils import tenant_context

from whatsapp.host.models import SessionLease
from whatsapp.messaging import drain as sending
from whatsapp.messaging import pacing
from whatsapp.messaging.tasks import sweep_queued_messages
from whatsapp.models import Message, PacingPolicy, WhatsAppSession
from whatsapp.tests.support import link_session, ok

NOON = datetime(2031, 3, 10, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2031, 3, 11, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)
TO = "+6281234567890"
CHAT = "6281234567890@s.whatsapp.net"


@pytest.fixture(autouse=True)
def pacing_on(settings):
    settings.WHATSAPP_PACING_ENABLED = True
    settings.WHATSAPP_PACING_MIN_INTERVAL_MS = 3000
    settings.WHATSAPP_PACING_JITTER_MS = 0
    settings.WHATSAPP_PACING_DAILY_CAP = 1000
    settings.WHATSAPP_PACING_WARMUP_DAYS = 0
    settings.WHATSAPP_PACING_WARMUP_DAILY_CAP = 200


@pytest.fixture
def acme(named):
    with tenant_context(named.acme):
        yield named.acme


def a_session(name="front-desk", **fields):
    fields.setdefault("linked_at", NOON - timedelta(days=90))
    return WhatsAppSession.objects.create(name=name, phone="+14155550123", status="connected", **fields)


def queue_one(session, now):
    """A message through the drain's claim at `now` (nothing is sent here): the time it goes, now (claimed with
    its attempt counted) or the slot it waits for (queued, no attempt counted)."""
    message = Message.objects.create(session=session, direction="out", chat_jid=CHAT, to_phone=TO)
    sending.claim(session, pacing.current_policy(), now, 10)
    message.refresh_from_db()
    if message.paced_until is not None:
        assert (message.status, message.attempts) == ("queued", 0)
        return message.next_attempt_at
    assert (message.status, message.attempts) == ("sending", 1)
    return now


def sent(session, at, count=1):
    for _ in range(count):
        Message.objects.create(session=session, direction="out", chat_jid=CHAT, to_phone=TO, status="sent",
                               sent_at=at)


# --- slots ----------------------------------------------------------------------------------------------------


def test_successive_reservations_get_successive_slots(acme):
    session = a_session()
    slots = [pacing.reserve_slot(session.pk, NOON) for _ in range(3)]
    assert slots == [NOON, NOON + 3 * S, NOON + 6 * S]
    session.refresh_from_db()
    assert session.next_send_at == NOON + 9 * S
    # Later than the last slot: at once again.
    assert pacing.reserve_slot(session.pk, NOON + 60 * S) == NOON + 60 * S


def test_jitter_adds_a_random_gap_within_its_bound(acme, settings):
    settings.WHATSAPP_PACING_JITTER_MS = 2000
    session = a_session()
    rng = random.Random(7)
    slots = [pacing.reserve_slot(session.pk, NOON, rng=rng) for _ in range(20)]
    gaps = [(b - a).total_seconds() for a, b in zip(slots, slots[1:])]
    assert all(3 <= gap <= 5 for gap in gaps)
    assert len(set(gaps)) > 1  # not a fixed beat
    assert len(gaps) / (slots[-1] - slots[0]).total_seconds() * 60 < 20  # under 20 a minute per number


def test_sessions_are_paced_separately(acme):
    one, two = a_session("one"), a_session("two")
    assert pacing.reserve_slot(one.pk, NOON) == NOON
    assert pacing.reserve_slot(two.pk, NOON) == NOON
    assert pacing.reserve_slot(one.pk, NOON) == NOON + 3 * S


def test_the_daily_cap_moves_the_slot_to_the_next_utc_day(acme, settings):
    settings.WHATSAPP_PACING_DAILY_CAP = 3
    session = a_session()
    sent(session, NOON - timedelta(hours=1), count=2)
    sent(session, NOON - timedelta(days=1))  # yesterday's do not count
    assert queue_one(session, NOON) == NOON  # the third of today
    assert queue_one(session, NOON) == MIDNIGHT  # today is full
    assert queue_one(session, NOON) == MIDNIGHT + 3 * S


def test_reserved_slots_count_against_their_day(acme, settings):
    settings.WHATSAPP_PACING_DAILY_CAP = 2
    session = a_session()
    waiting = [Message.objects.create(session=session, direction="out", chat_jid=CHAT, status="queued",
                                      next_attempt_at=NOON + i * S, paced_until=NOON + i * S)
               for i in (3, 6)]
    assert pacing.reserve_slot(session.pk, NOON) == MIDNIGHT
    # A message does not take room from itself when its slot is reserved again.
    assert pacing.reserve_slot(session.pk, NOON, message_id=waiting[0].pk) >= MIDNIGHT + 3 * S
    assert pacing.used_on_day(session.pk, pacing.day_start(NOON), exclude_message_id=waiting[0].pk) == 1


def test_a_new_number_warms_up_with_a_lower_cap(acme, settings):
    settings.WHATSAPP_PACING_DAILY_CAP = 5
    settings.WHATSAPP_PACING_WARMUP_DAYS = 2
    settings.WHATSAPP_PACING_WARMUP_DAILY_CAP = 1
    session = a_session(linked_at=NOON - timedelta(hours=1))
    assert queue_one(session, NOON) == NOON
    assert queue_one(session, NOON) == MIDNIGHT  # 1 a day while new
    assert queue_one(session, NOON) == MIDNIGHT + timedelta(days=1)  # still warming up that day
    # Two days after linking the warm-up is over: the full cap.
    third_day = MIDNIGHT + timedelta(days=2)
    assert [queue_one(session, NOON) for _ in range(2)] == [third_day, third_day + 3 * S]
    stats = pacing.queue_stats(session, now=NOON)
    assert stats["warmup"] == {"active": True, "until": (NOON + timedelta(days=1, hours=23)).isoformat(),
                               "daily_cap": 1}
    assert stats["daily_cap"] == 1


def test_linked_at_is_taken_from_the_first_connection_when_missing(acme, settings):
    settings.WHATSAPP_PACING_WARMUP_DAYS = 7
    session = a_session(linked_at=None, connected_at=NOON - timedelta(days=1))
    pacing.reserve_slot(session.pk, NOON)
    session.refresh_from_db()
    assert session.linked_at == NOON - timedelta(days=1)
    never_connected = a_session("fresh", linked_at=None)
    pacing.reserve_slot(never_connected.pk, NOON)
    never_connected.refresh_from_db()
    assert never_connected.linked_at == NOON


def test_the_tenants_policy_overrides_the_defaults_field_by_field(acme):
    PacingPolicy.objects.create(min_interval_ms=10_000, daily_cap=None)
    policy = pacing.current_policy()
    assert (policy.min_interval_ms, policy.jitter_ms, policy.daily_cap) == (10_000, 0, 1000)
    session = a_session()
    assert [pacing.reserve_slot(session.pk, NOON) for _ in range(2)] == [NOON, NOON + 10 * S]


@pytest.mark.parametrize("how", ["installation", "tenant"])
def test_pacing_off_gives_every_message_its_slot_at_once(acme, settings, how):
    if how == "installation":
        settings.WHATSAPP_PACING_ENABLED = False
    else:
        PacingPolicy.objects.create(enabled=False)
    settings.WHATSAPP_PACING_DAILY_CAP = 1
    session = a_session()
    assert [pacing.reserve_slot(session.pk, NOON) for _ in range(3)] == [NOON] * 3
    session.refresh_from_db()
    assert session.next_send_at is None
    assert pacing.queue_stats(session, now=NOON)["pacing_enabled"] is False


def test_queue_stats(acme, settings):
    settings.WHATSAPP_PACING_DAILY_CAP = 50
    session = a_session(next_send_at=NOON + 4 * S)
    sent(session, NOON - timedelta(hours=2), count=3)
    sent(session, NOON - timedelta(days=1), count=2)
    Message.objects.create(session=session, direction="out", chat_jid=CHAT, status="queued",
                           next_attempt_at=NOON + 4 * S, paced_until=NOON + 4 * S)
    Message.objects.create(session=session, direction="out", chat_jid=CHAT, status="queued")
    Message.objects.create(session=session, direction="out", chat_jid=CHAT, status="sending")
    stats = pacing.queue_stats(session, now=NOON)
    assert stats == {
        "pacing_enabled": True, "queued": 2, "waiting": 1, "sending": 1,
        "next_send_at": (NOON + 4 * S).isoformat(), "next_queued_send_at": (NOON + 4 * S).isoformat(),
        "sent_today": 3, "daily_cap": 50, "day_resets_at": MIDNIGHT.isoformat(),
        "warmup": {"active": False, "until": None, "daily_cap": 50}, "min_interval_ms": 3000, "jitter_ms": 0,
    }


def test_a_number_not_linked_yet_shows_the_warm_up_cap_it_will_have(acme, settings):
    """Before the scan (and on a page loaded before it) the card must not promise the full cap: the number will
    be new when it links."""
    settings.WHATSAPP_PACING_WARMUP_DAYS = 7
    session = WhatsAppSession.objects.create(name="front-desk", status="qr")
    assert pacing.queue_stats(session, now=NOON)["daily_cap"] == 200
    session.linked_at = NOON
    assert pacing.queue_stats(session, now=NOON)["daily_cap"] == 200
    assert pacing.queue_stats(session, now=NOON)["warmup"]["active"] is True
    session.linked_at = NOON - timedelta(days=8)
    assert pacing.queue_stats(session, now=NOON)["daily_cap"] == 1000


# --- in the pipeline ------------------------------------------------------------------------------------------


@pytest.fixture
def frozen(monkeypatch):
    """django.utils.timezone.now, as the pipeline reads it, on a clock the test moves."""
    now = {"t": None}

    def freeze(at):
        now["t"] = at
        monkeypatch.setattr(django.utils.timezone, "now", lambda: now["t"])

    return freeze


def load(tenant, pk):
    with tenant_context(tenant):
        return Message.objects.get(pk=pk)


@pytest.mark.django_db(transaction=True)
def test_queued_messages_wait_their_turn_and_the_sweeper_sends_them(named, api_as, host, clock, frozen, settings):
    settings.WHATSAPP_PACING_DAILY_CAP = 2
    settings.WHATSAPP_MESSAGE_MAX_ATTEMPTS = 1  # waiting is not an attempt: nothing here may fail
    alice = api_as(named.alice)
    link_session(alice, host, clock)
    start = django.utils.timezone.now().replace(microsecond=0)
    frozen(start)
    with tenant_context(named.acme):
        # The lease of the in-process host is renewed by heartbeats a frozen clock never gives.
        SessionLease.objects.update(lease_expires_at=start + timedelta(days=3))
    ids = [ok(alice.post("/api/v1/messages", {"session": "front-desk", "to": TO, "text": f"m{i}"},
                         format="json"), 202)["id"] for i in range(3)]
    first, second, third = (load(named.acme, pk) for pk in ids)
    assert first.status == "sent" and first.attempts == 1
    next_day = pacing.day_start(start) + timedelta(days=1)
    assert (second.status, second.attempts, second.next_attempt_at) == ("queued", 0, start + 3 * S)
    assert (second.paced_until, second.paced_reason, second.failure_reason) == (start + 3 * S, "interval", "")
    assert (third.status, third.attempts, third.next_attempt_at) == ("queued", 0, next_day)
    assert (third.paced_until, third.paced_reason) == (next_day, "daily_cap")
    payload = ok(alice.get(f"/api/v1/messages/{second.pk}"))
    assert (payload["status"], payload["paced_until"], payload["paced_reason"]) == (
        "queued", (start + 3 * S).isoformat(), "interval")

    # The session page's figures.
    with tenant_context(named.acme):
        stats = pacing.queue_stats(WhatsAppSession.objects.get(name="front-desk"))
    assert (stats["queued"], stats["waiting"], stats["sent_today"], stats["daily_cap"]) == (2, 2, 1, 2)
    assert stats["next_queued_send_at"] == (start + 3 * S).isoformat()
    assert ok(alice.get("/api/v1/sessions/front-desk/queue")) == stats

    # Sweeps before a slot leave the message waiting (not failed, no attempt counted).
    frozen(start + 2 * S)
    assert sweep_queued_messages() == 0
    with tenant_context(named.acme):  # a wake before the slot (a duplicate, early) sends nothing
        assert sending.route(named.acme.schema_name, second.session_id) == "here"
    assert (load(named.acme, second.pk).status, load(named.acme, second.pk).attempts) == ("queued", 0)

    frozen(start + 3 * S)
    assert sweep_queued_messages() == 1
    second = load(named.acme, second.pk)
    assert (second.status, second.attempts, second.failure_reason, second.paced_until) == ("sent", 1, "", None)
    assert load(named.acme, third.pk).status == "queued"

    frozen(next_day + S)
    assert sweep_queued_messages() == 1
    third = load(named.acme, third.pk)
    assert third.status == "sent" and third.attempts == 1 and third.sent_at == next_day + S


@pytest.mark.django_db(transaction=True)
def test_with_pacing_off_every_message_goes_at_once(named, api_as, host, clock, settings):
    settings.WHATSAPP_PACING_ENABLED = False
    alice = api_as(named.alice)
    link_session(alice, host, clock)
    ids = [ok(alice.post("/api/v1/messages", {"session": "front-desk", "to": TO, "text": f"m{i}"},
                         format="json"), 202)["id"] for i in range(3)]
    assert [load(named.acme, pk).status for pk in ids] == ["sent"] * 3


def test_a_claim_counts_no_attempt_while_a_message_waits(acme, settings):
    settings.WHATSAPP_MESSAGE_MAX_ATTEMPTS = 2
    session = a_session(next_send_at=NOON + 10 * S)
    retried = Message.objects.create(session=session, direction="out", chat_jid=CHAT, status="queued", attempts=1,
                                     next_attempt_at=NOON - S, failure_reason="not_connected: reconnecting")
    for _ in range(3):  # however often the session is drained before its slot
        assert sending.claim(session, pacing.current_policy(), NOON, 10) == []
    retried.refresh_from_db()
    assert (retried.status, retried.attempts, retried.next_attempt_at) == ("queued", 1, NOON + 10 * S)
    assert retried.paced_until == NOON + 10 * S
    assert retried.failure_reason == "not_connected: reconnecting"  # what happened last is kept
