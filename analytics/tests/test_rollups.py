"""Rollups: after a random mix of sends, receipts, failures, inbound messages and deletes across two tenants in two
time zones, the folded rollups equal a recomputation from messages (in Python here, and by rebuild_analytics), and
one tenant's figures never count the other's messages.

alice owns Acme, carol owns Globex. Celery is eager: sends go through the drain on the in-process simulator host.
"""
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tenants.utils import tenant_context

from analytics import rollups, selectors
from analytics.models import (
    ChatEdgeHourly,
    ChatMonthly,
    FailureHourly,
    FirstResponse,
    FirstResponseHourly,
    HourlyRollup,
    MessageCounter,
)
from analytics.tasks import fold_rollups
from whatsapp.conversations.models import Conversation
from whatsapp.messaging.models import Message
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.tests.support import link_session, ok, settle

V1 = "/api/v1"
ZONES = {"acme": "America/New_York", "globex": "Asia/Tokyo"}


def hourly_from_messages():
    counts = Counter()
    for m in Message.objects.all():
        key = (m.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0), m.session_id, m.direction,
               m.type, m.status)
        counts[key + ("count",)] += 1
        counts[key + ("bytes",)] += m.media_size or 0
    return {key: value for key, value in counts.items() if value}


def hourly_from_rollups():
    out = {}
    for r in HourlyRollup.objects.all():
        key = (r.hour.astimezone(UTC), r.session_id, r.direction, r.type, r.status)
        if r.count:
            out[key + ("count",)] = r.count
        if r.media_bytes:
            out[key + ("bytes",)] = r.media_bytes
    return out


def side_tables():
    return (
        sorted((c.month, c.session_id, c.chat_jid, c.sent, c.received) for c in ChatMonthly.objects.all()
               if c.sent or c.received),
        sorted((f.hour, f.session_id, f.reason, f.count) for f in FailureHourly.objects.all() if f.count),
        sorted((r.message_id, r.session_id, r.hour, round(r.seconds, 3)) for r in FirstResponse.objects.all()),
        sorted((r.hour, r.session_id, r.bucket, r.count, round(r.seconds_sum, 2))
               for r in FirstResponseHourly.objects.all() if r.count),
        sorted((c.hour, c.session_id, c.chat_jid, c.sent, c.received) for c in ChatEdgeHourly.objects.all()
               if c.sent or c.received),
    )


def daily_from_messages(zone, first_day):
    days = {}
    for m in Message.objects.all():
        # Buckets belong to the local day of their UTC hour's start (whole-hour zones: the message's own day).
        day = m.created_at.astimezone(zone).date()
        if day < first_day:
            continue
        figures = days.setdefault(day.isoformat(), {"sent": 0, "received": 0, "failed": 0})
        if m.direction == "in":
            figures["received"] += 1
        elif m.status == "failed":
            figures["failed"] += 1
        else:
            figures["sent"] += 1
    return days


def scatter(session, rng, n):
    """Messages made straight in the table over the last ten days (the trigger counts every writer), then moved,
    failed and some deleted as the pipeline would."""
    now = timezone.now()
    made = []
    for i in range(n):
        direction = rng.choice(["out", "in"])
        chat = f"1415555{rng.randint(0, 4):04d}@s.whatsapp.net"
        conversation, _ = Conversation.objects.get_or_create(session=session, chat_jid=chat)
        made.append(Message.objects.create(
            session=session, direction=direction, chat_jid=chat, conversation=conversation,
            type=rng.choice(["text", "image"]), media_size=rng.choice([None, 1000, 2500]),
            status="received" if direction == "in" else "queued",
            created_at=now - timedelta(minutes=rng.randint(0, 10 * 24 * 60))))
    for m in made:
        if m.direction == "out":
            for status in ["sent", "delivered", "read"][:rng.randint(0, 3)]:
                Message.objects.filter(pk=m.pk).update(status=status)
            if rng.random() < 0.2:
                reason = rng.choice(["timeout", "banned"])
                Message.objects.filter(pk=m.pk).update(status="failed", failure_reason=reason)
            if rng.random() < 0.1:  # a failed message's reason changes when it fails again
                Message.objects.filter(pk=m.pk, status="failed").update(failure_reason="again")
    for m in rng.sample(made, n // 10):
        Message.objects.filter(pk=m.pk).delete()


@pytest.mark.django_db(transaction=True)
def test_rollups_equal_a_recomputation_from_messages_across_tenants_and_time_zones(named, clients, host, clock):
    rng = random.Random(13)
    for tenant, client, name in ((named.acme, clients["alice"], "acme-desk"), (named.globex, clients["carol"],
                                                                              "globex-desk")):
        tenant.timezone = ZONES[tenant.slug]
        tenant.save(update_fields=["timezone"])
        if tenant is named.globex:  # session ids differ across the schemas: the host's keys end with them
            with tenant_context(tenant):
                WhatsAppSession.objects.create(name="spacer", phone="+14155550199")
        provider = link_session(client, host, clock, name=name)
        for i in range(12):
            roll = rng.random()
            if roll < 0.15:
                provider.fail_next_send("rate_limited")
            if roll < 0.6:
                ok(client.post(f"{V1}/messages", {"session": name, "to": f"+1415555{i % 3:04d}", "text": f"m{i}"},
                               format="json"), 202)
            else:
                ok(client.post(f"{V1}/test-helpers/sessions/{name}/inbound",
                               {"from": f"+1415555{i % 3:04d}", "text": f"in{i}"}, format="json"), 202)
            settle(host, clock, rng.choice([0, 1, 2]))
        settle(host, clock, 3)  # receipts
        with tenant_context(tenant):
            session = WhatsAppSession.objects.get(name=name)
            scatter(session, rng, 60)
            if tenant is named.acme:  # half folded, half waiting: reads add what is not folded yet
                rollups.fold()
                scatter(session, rng, 20)

    for tenant in (named.acme, named.globex):
        zone = ZoneInfo(ZONES[tenant.slug])
        with tenant_context(tenant):
            assert MessageCounter.objects.exists()
            days = {row["date"]: {k: row[k] for k in ("sent", "received", "failed")}
                    for row in selectors.trends(zone, 11) if row["sent"] or row["received"] or row["failed"]}
            first_day = timezone.now().astimezone(zone).date() - timedelta(days=10)
            assert days == daily_from_messages(zone, first_day)  # exact before the fold

    fold_rollups()
    for tenant in (named.acme, named.globex):
        with tenant_context(tenant):
            assert not MessageCounter.objects.exists()
            expected = hourly_from_messages()
            assert expected and hourly_from_rollups() == expected
            folded = side_tables()
            assert folded[0] and folded[1] and folded[2] and folded[3]  # (chat edges: only near a month's end)
            call_command("rebuild_analytics", tenant=tenant.slug)
            assert hourly_from_rollups() == expected
            assert side_tables() == folded

    # Isolation: each tenant's figures are its own messages only.
    with tenant_context(named.acme):
        acme_total = Message.objects.count()
        acme_sessions = set(WhatsAppSession.objects.values_list("id", flat=True))
        assert sum(r.count for r in HourlyRollup.objects.all()) == acme_total
        assert set(HourlyRollup.objects.values_list("session_id", flat=True)) <= acme_sessions
    with tenant_context(named.globex):
        assert sum(r.count for r in HourlyRollup.objects.all()) == Message.objects.count() != acme_total


def test_a_second_fold_adds_nothing_and_the_trigger_can_be_switched_off(named):
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="desk", phone="+14155550100")
        Message.objects.create(session=session, direction="in", chat_jid="1@s.whatsapp.net", status="received")
        assert rollups.fold() == 1
        assert rollups.fold() == 0
        assert HourlyRollup.objects.get().count == 1
        rollups.set_counting(False)
        Message.objects.create(session=session, direction="in", chat_jid="1@s.whatsapp.net", status="received")
        rollups.set_counting(True)
        assert rollups.fold() == 0 and HourlyRollup.objects.get().count == 1
        rollups.rebuild()
        assert HourlyRollup.objects.get().count == 2


def test_the_median_first_response_is_estimated_within_its_bucket():
    from analytics.selectors import _median_of_buckets

    assert _median_of_buckets([(0, 1), (1, 1), (2, 1)], 3) == 20.0  # 5 s, 10-30 s, 30-60 s: halfway into 10-30
    assert _median_of_buckets([(0, 4)], 4) == 5.0
    assert _median_of_buckets([(14, 2)], 2) == 604800 * 1.5  # the open last bucket


# Around a UTC month's turn: 2026-11-30 04:00 to 2026-12-01 20:00 UTC, which is already December in Tokyo (UTC+9)
# from 15:00 UTC and still November in New York (UTC-5) until 05:00 UTC.
TURN = datetime(2026, 12, 1, tzinfo=UTC)
TURN_ZONES = {"acme": "Asia/Tokyo", "globex": "America/New_York"}


def turn_of_the_month(tenant):
    """Every hour of the 40 around the turn: an inbound message, then an answer 90 s later (first responses), every
    third answer failing with a reason that changes each UTC day; chats change every 7 hours."""
    with tenant_context(tenant):
        session = WhatsAppSession.objects.create(name="turn", phone="+14155550177")
        for h in range(-20, 20):
            at = TURN + timedelta(hours=h, minutes=10)
            chat = f"1415555{(h + 20) // 7:04d}@s.whatsapp.net"
            conversation, _ = Conversation.objects.get_or_create(session=session, chat_jid=chat)
            Message.objects.create(session=session, direction="in", chat_jid=chat, conversation=conversation,
                                   status="received", created_at=at)
            failed = h % 3 == 0
            Message.objects.create(session=session, direction="out", chat_jid=chat, conversation=conversation,
                                   status="failed" if failed else "delivered", created_at=at + timedelta(seconds=90),
                                   failure_reason=f"reason of {at:%d}" if failed else "")


def expected_top(zone, month):
    totals = Counter()
    for m in Message.objects.all():
        if m.created_at.astimezone(zone).date().replace(day=1) == month:
            totals[(m.chat_jid, m.direction)] += 1
    chats = {jid for jid, _ in totals}
    ranked = sorted(chats, key=lambda jid: (-(totals[(jid, "out")] + totals[(jid, "in")]), jid))
    return [(jid, totals[(jid, "out")], totals[(jid, "in")]) for jid in ranked]


def expected_failures(zone, first_day):
    counts = Counter(m.failure_reason for m in Message.objects.filter(status="failed")
                     if m.created_at.astimezone(zone).date() >= first_day)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def figures(zone):
    return {
        "top": {month: [(c["chat_jid"], c["sent"], c["received"]) for c in selectors.top_contacts(
            zone, now=datetime.combine(month, datetime.min.time(), tzinfo=zone) + timedelta(days=20))]
            for month in (date(2026, 11, 1), date(2026, 12, 1))},
        "failures": {day: [(f["reason"], f["count"]) for f in selectors.failures_by_reason(zone, day)]
                     for day in (date(2026, 11, 30), date(2026, 12, 1))},
        "responses": {day: selectors.first_response(zone, day) for day in (date(2026, 11, 30), date(2026, 12, 1))},
    }


@pytest.mark.parametrize("folded", [False, True])
def test_failures_first_responses_and_top_contacts_follow_the_workspace_time_zone(named, folded):
    for tenant in (named.acme, named.globex):
        turn_of_the_month(tenant)
    for tenant in (named.acme, named.globex):
        zone = ZoneInfo(TURN_ZONES[tenant.slug])
        with tenant_context(tenant):
            if folded:
                rollups.fold()
                assert not MessageCounter.objects.exists() and ChatEdgeHourly.objects.exists()
            found = figures(zone)
            for month, top in found["top"].items():
                assert top == expected_top(zone, month)[:selectors.TOP_CONTACTS], (tenant.slug, month)
            for day, failures in found["failures"].items():
                assert failures == expected_failures(zone, day), (tenant.slug, day)
            if folded:  # first responses are computed by the fold
                for day, response in found["responses"].items():
                    answers = [r.seconds for r in FirstResponse.objects.all()
                               if r.created_at.astimezone(zone).date() >= day]
                    assert response["count"] == len(answers) > 0
                    assert response["average_seconds"] == round(sum(answers) / len(answers), 1) == 90.0
                folded_tables = side_tables()
                call_command("rebuild_analytics", tenant=tenant.slug)
                assert side_tables() == folded_tables and figures(zone) == found
    # The two zones' months differ: Tokyo's December starts 14 hours before New York's.
    with tenant_context(named.acme):
        tokyo = expected_top(ZoneInfo("Asia/Tokyo"), date(2026, 12, 1))
        new_york = expected_top(ZoneInfo("America/New_York"), date(2026, 12, 1))
        assert sum(s + r for _, s, r in tokyo) - sum(s + r for _, s, r in new_york) == 28
