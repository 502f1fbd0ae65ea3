"""Campaigns: planning and feeding a 100,000-recipient campaign, and its live progress.

In a throwaway database (bench/_common.py), a tenant with audience contacts of whom CAMPAIGN_BENCH_RECIPIENTS
(100,000) remain once the opt-out list (5 % of them) and the blocked numbers (1 %) are filtered out, a template
with two variations and three variables, two connected numbers (no session host: what the feeder queues stays
queued, as in a backlog).

Figures:
- planning: create and start the campaign (audience query with the opt-out/blocked filters, rendering, recipient
  rows in chunks, by COPY): seconds (target: < 10 s for 100,000) and peak Python memory (tracemalloc; those runs
  are slower), also for a tenth of the audience in the same run, to show memory flat in the recipient count; and
  once more with SPEED_PATH_SQL=false (the ORM's bulk_create) to measure the switch;
- feeding: FEED_TICKS rounds of the feeder on a manual clock (61 s apart, every number due each round), the queue
  emptied only every fifth round: milliseconds per round, and the most messages any number had in its queue after a
  round (never more than the window, feeder.WINDOW);
- progress: the campaign's figures computed (one grouped statement) and pushed through the Redis channel layer to a
  listening channel on loopback, PUSHES times: p50 / p99 ms.
Last line: one JSON object.
"""
import asyncio
import os
import statistics
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_database, emit, quiet_logging  # noqa: E402

RECIPIENTS = int(os.environ.get("CAMPAIGN_BENCH_RECIPIENTS", "100000"))
FEED_TICKS = int(os.environ.get("CAMPAIGN_BENCH_FEED_TICKS", "50"))
PUSHES = int(os.environ.get("CAMPAIGN_BENCH_PUSHES", "200"))
SCHEMA = "t_bench_campaigns"


def say(text):
    print(text, flush=True)


def setup():
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Membership, User
    from tenants.models import Plan, Tenant
    from tenants.pool import create_and_migrate_schema
    from whatsapp.models import AudienceContact, BlockedNumber, MessageTemplate, OptOut, WhatsAppSession

    create_and_migrate_schema(SCHEMA)
    plan = Plan.objects.filter(code="enterprise").first() or Plan.objects.order_by("-sort_order").first()
    tenant = Tenant.objects.create(name="Bench", slug="bench", schema_name=SCHEMA, status="active", plan=plan,
                                   approved_at=timezone.now())
    user = User.objects.create_user("owner@bench.test", "x" * 20)
    Membership.objects.create(user=user, tenant=tenant, role="owner")
    connection.set_tenant(tenant)
    started = time.perf_counter()
    batch, opted, blocked, eligible, n = [], [], [], 0, -1
    while eligible < RECIPIENTS:  # RECIPIENTS left once the opted-out and blocked contacts are filtered out
        n += 1
        phone = f"+62812{n:08d}"
        tags = ["fair", "small"] if n % 10 == 5 else ["fair"]  # "small": a tenth, none opted out or blocked
        batch.append(AudienceContact(phone=phone, name=f"Guest {n}", tags=tags,
                                     fields={"seat": str(n), "order_id": f"A-{n}"}))
        if n % 20 == 0:
            opted.append(OptOut(phone=phone, source="api"))
        elif n % 100 == 1:
            blocked.append(BlockedNumber(phone=phone))
        else:
            eligible += 1
        if len(batch) == 5000:
            AudienceContact.objects.bulk_create(batch)
            batch = []
    AudienceContact.objects.bulk_create(batch)
    OptOut.objects.bulk_create(opted)
    BlockedNumber.objects.bulk_create(blocked)
    template = MessageTemplate.objects.create(
        name="invite", body="Hi {{first_name}}, your seat is {{field.seat}} (order {{field.order_id}}).",
        variations=["Hello {{name}}: seat {{field.seat}}, order {{field.order_id}}.",
                    "{{first_name}}, seat {{field.seat}} is yours ({{field.order_id}})."])
    for name in ("one", "two"):
        WhatsAppSession.objects.create(name=name, status="connected", phone="+14155550100")
    say(f"setup: {n + 1} contacts ({len(opted)} opted out, {len(blocked)} blocked) in "
        f"{time.perf_counter() - started:.1f} s")
    return tenant, user, template


def plan(tenant, user, template, audience, label, trace=False):
    from django.db import transaction

    from whatsapp.campaigns import actions

    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    with transaction.atomic():
        campaign = actions.create_campaign(tenant, acting_user=user, name=label, template=template.pk,
                                           audience=audience, sessions=["one", "two"], daily_cap=100_000,
                                           cold_daily_cap=100_000, start=True)
    seconds = time.perf_counter() - started
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    say(f"planning {label}: {campaign.planned_count} recipients in {seconds:.2f} s"
        + (f" (tracemalloc on), peak Python memory {peak / 1e6:.1f} MB" if trace else ""))
    return campaign, seconds, peak


def feed(tenant, campaign):
    from django.db.models import Count
    from django.utils import timezone

    from whatsapp.campaigns import feeder
    from whatsapp.models import CampaignRecipient, Message

    now, rounds, most = timezone.now(), [], 0
    for _ in range(FEED_TICKS):
        started = time.perf_counter()
        feeder.feed_schema(tenant, now)
        rounds.append(time.perf_counter() - started)
        counts = (CampaignRecipient.objects.filter(campaign=campaign, message__status__in=["queued", "sending"])
                  .values("session_id").order_by().annotate(n=Count("pk")))
        most = max([most, *[row["n"] for row in counts]])
        # Nothing sends (no host): the queue holds what the feeder gave, and every fifth round it all counts as
        # sent, so the feeder meets a full queue in between (a number is due every round: rounds are 61 s apart,
        # the gap at most 60 s) and only the window keeps it from queuing more.
        if len(rounds) % 5 == 0:
            Message.objects.filter(status__in=["queued", "sending"]).update(status="sent", sent_at=now)
        now += timedelta(seconds=61)
    say(f"feeding: {FEED_TICKS} rounds, median {statistics.median(rounds) * 1000:.1f} ms, p99 "
        f"{sorted(rounds)[int(len(rounds) * 0.99) - 1] * 1000:.1f} ms; most in one number's queue: {most} "
        f"(window {feeder.WINDOW})")
    return rounds, most


def pushes(tenant, campaign):
    from channels.layers import get_channel_layer
    from django_tenants.utils import schema_context

    from whatsapp.campaigns import progress

    layer = get_channel_layer()
    group = progress.group(SCHEMA, campaign.pk)
    figures = [None]

    def figures_of():  # in a worker thread: its own connection, pointed at the tenant's schema
        with schema_context(SCHEMA):
            return progress.progress(campaign, tenant)

    async def measure():
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        times = []
        for _ in range(PUSHES):
            started = time.perf_counter()
            data = await asyncio.to_thread(figures_of)
            await layer.group_send(group, {"type": "campaign.progress", "data": data})
            await layer.receive(channel)
            times.append(time.perf_counter() - started)
        await layer.group_discard(group, channel)
        figures[0] = data
        return times

    times = asyncio.run(measure())
    ms = sorted(t * 1000 for t in times)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    say(f"progress push (computed + through Redis to a listener): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"over {PUSHES}")
    return p50, p99


def main():
    os.environ.update(CELERY_TASK_ALWAYS_EAGER="true", WHATSAPP_PACING_ENABLED="false",
                      WHATSAPP_RATE_LIMIT_PER_COMPANY="-1", LOG_LEVEL="ERROR",
                      CAMPAIGN_MAX_RECIPIENTS=str(max(RECIPIENTS, 100_000)))
    with bench_database(say):
        quiet_logging()
        tenant, user, template = setup()
        from django.conf import settings

        from whatsapp.campaigns import feeder

        small, _, small_peak = plan(tenant, user, template, {"tags": ["small"]}, "a tenth", trace=True)
        _, _, peak = plan(tenant, user, template, {"tags": ["fair"]}, "everyone", trace=True)
        campaign, seconds, _ = plan(tenant, user, template, {"tags": ["fair"]}, "everyone, COPY")
        settings.SPEED_PATH_SQL = False  # the ORM's bulk_create instead of COPY, to measure the switch again
        orm, orm_s, _ = plan(tenant, user, template, {"tags": ["fair"]}, "everyone, ORM")
        settings.SPEED_PATH_SQL = True
        rounds, most = feed(tenant, campaign)
        p50, p99 = pushes(tenant, campaign)
        from django.db import connection

        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
    emit({"bench": "campaigns", "recipients": campaign.planned_count, "planning_s": round(seconds, 2),
          "planning_peak_mb": round(peak / 1e6, 1), "planning_orm_s": round(orm_s, 2),
          "tenth_recipients": small.planned_count, "tenth_peak_mb": round(small_peak / 1e6, 1),
          "feed_round_median_ms": round(statistics.median(rounds) * 1000, 1), "queue_max_per_number": most,
          "window": feeder.WINDOW, "progress_push_p50_ms": round(p50, 1), "progress_push_p99_ms": round(p99, 1)})


if __name__ == "__main__":
    main()
