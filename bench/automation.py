"""The receptionist's cost: inbound message → automatic reply handed to the provider, with RULES keyword rules in
the workspace, in one process against Postgres (as on a session host).

Each inbound message goes through the host's appliers (whatsapp.host.handlers.apply: messaging stores it,
broadcasts look for an opt-out word, the receptionist answers), then the session's queue is drained in-process
(whatsapp.messaging.drain.drain, what the host's drain task runs; the drain task's wake is left out) into a
provider that records when it is handed each message. Pacing is off: the figure is automation's, not a policy's.

- latency: N inbound messages from N contacts (the per-contact cap never applies), half matching the last of the
  rules (every rule is tried: the worst case), half none (the fallback answers); p50/p99 from the event to the
  reply handed to the provider (target p99 < 200 ms). Interleaved with each, the baseline: an inbound message to
  a second number whose receptionist is off, answered by queueing the same reply directly (the pipeline without
  automation's decision), so the ratio of the two holds on a busy machine;
- throughput: blocks of M inbound messages applied as fast as one host thread applies them, with the receptionist
  on and off (its settings disabled: what every message still costs); R rounds, each an on block and an off
  block back to back (the order alternating). The cost of automation is 1 - on/off per round, and its median over
  the rounds: a pair measured seconds apart shares the machine's load, which moves a lot on a shared machine
  (target <= 20 %; replies are queued in the "on" blocks, not drained).

AUTOMATION_BENCH_MESSAGES (N, default 1000), AUTOMATION_BENCH_RULES (default 200), AUTOMATION_BENCH_RATE_MESSAGES
(M, default 50), AUTOMATION_BENCH_ROUNDS (R, default 20). Last line: one JSON object.
"""
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_database, emit, quiet_logging  # noqa: E402

MESSAGES = int(os.environ.get("AUTOMATION_BENCH_MESSAGES", "1000"))
RULES = int(os.environ.get("AUTOMATION_BENCH_RULES", "200"))
RATE_MESSAGES = int(os.environ.get("AUTOMATION_BENCH_RATE_MESSAGES", "50"))
ROUNDS = int(os.environ.get("AUTOMATION_BENCH_ROUNDS", "20"))
SCHEMA = "bench_automation"


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Recording:
    """A provider that accepts everything and notes when it was handed each message."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.handed = []

    def send(self, to, message):
        self.handed.append(time.perf_counter())
        return f"BENCH{next(self.ids)}"


def main():
    quiet_logging()
    with bench_database():
        from datetime import timedelta

        from django.conf import settings
        from django.db import connection, transaction
        from django.utils import timezone
        from django_tenants.utils import schema_context

        from tenants.models import Plan, Tenant
        from tenants.plans import seed_plans
        from tenants.pool import create_and_migrate_schema
        from whatsapp.automation import actions
        from whatsapp.automation.models import AutomationLog, Receptionist
        from whatsapp.host import handlers
        from whatsapp.messaging import actions as messaging
        from whatsapp.messaging import drain
        from whatsapp.messaging.models import Message
        from whatsapp.providers.base import EventKind, ProviderEvent
        from whatsapp.sessions.models import WhatsAppSession

        settings.WHATSAPP_PACING_ENABLED = False
        drain.wake = lambda *args, **kwargs: False  # the bench drains in-process instead of through a task
        seed_plans(Plan)
        started = time.perf_counter()
        create_and_migrate_schema(SCHEMA)
        connection.set_schema_to_public()
        now = timezone.now()
        tenant = Tenant.objects.create(name="Bench", slug="bench", schema_name=SCHEMA, status=Tenant.Status.ACTIVE,
                                       plan=Plan.objects.get(code="enterprise"), approved_at=now,
                                       trial_ends_at=now + timedelta(days=30))
        print(f"tenant schema migrated in {time.perf_counter() - started:.1f} s")
        with schema_context(SCHEMA):
            session = WhatsAppSession.objects.create(name="bench", phone="+14155550100",
                                                     status=WhatsAppSession.Status.CONNECTED, connected_at=now)
            actions.update_settings(tenant, acting_user=None, changes={
                "enabled": True, "fallback": "Thanks, we'll answer soon.", "cooldown_minutes": 0})
            for index in range(RULES):
                match = "regex" if index % 10 == 9 else "contains"
                # Zero-padded: no rule's keyword is inside another's, so the last rule's text matches only it.
                pattern = rf"\bkeyword{index:04d}\b" if match == "regex" else f"keyword{index:04d}"
                actions.create_rule(tenant, acting_user=None, fields={
                    "name": f"rule {index}", "match": match, "pattern": pattern, "priority": index,
                    "reply_text": f"Answer {index}"})
            plain = WhatsAppSession.objects.create(name="plain", phone="+14155550101",
                                                   status=WhatsAppSession.Status.CONNECTED, connected_at=now)
            actions.update_settings(tenant, session=plain, acting_user=None, changes={"enabled": False})
        key = f"{SCHEMA}:{session.pk}"
        contacts = itertools.count(10_000_000)

        def event(text, key=key):
            digits = f"628{next(contacts)}"
            jid = f"{digits}@s.whatsapp.net"
            return ProviderEvent(key, EventKind.MESSAGE, {
                "id": f"IN{digits}", "chat": jid, "sender": jid, "sender_phone": f"+{digits}", "from_me": False,
                "type": "text", "text": text, "push_name": "Bench"})

        provider = Recording()
        latencies, baseline = [], []
        last_rule = f"hello, keyword{RULES - 1:04d} please"
        for index in range(MESSAGES):
            inbound = event(last_rule if index % 2 == 0 else "just saying hello")
            before = len(provider.handed)
            began = time.perf_counter()
            handlers.apply(inbound)
            drain.drain(SCHEMA, session.pk, provider, window=drain.SendWindow())
            assert len(provider.handed) == before + 1, "no reply was handed to the provider"
            latencies.append(provider.handed[-1] - began)
            inbound = event(last_rule if index % 2 == 0 else "just saying hello", key=f"{SCHEMA}:{plain.pk}")
            began = time.perf_counter()
            handlers.apply(inbound)
            with schema_context(SCHEMA), transaction.atomic():
                messaging.queue_automatic({"session": plain.name, "to": inbound.data["chat"], "type": "text",
                                           "text": "Thanks, we'll answer soon."})
            drain.drain(SCHEMA, plain.pk, provider, window=drain.SendWindow())
            assert len(provider.handed) == before + 2, "no baseline reply was handed to the provider"
            baseline.append(provider.handed[-1] - began)
        with schema_context(SCHEMA):
            kinds = {kind: AutomationLog.objects.filter(kind=kind).count() for kind in ("rule", "fallback")}
            assert kinds == {"rule": (MESSAGES + 1) // 2, "fallback": MESSAGES // 2}, kinds
            assert Message.objects.filter(direction="out", status="sent").count() == 2 * MESSAGES
        p50, p99 = pct(latencies, 0.5) * 1000, pct(latencies, 0.99) * 1000
        base50, base99 = pct(baseline, 0.5) * 1000, pct(baseline, 0.99) * 1000
        print(f"inbound -> reply handed to the provider, {MESSAGES} messages, {RULES} rules: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        print(f"baseline (no automation, the reply queued directly), same run: p50 {base50:.1f} ms, "
              f"p99 {base99:.1f} ms: automation/baseline p50 {p50 / base50:.2f}x, p99 {p99 / base99:.2f}x")

        rates, costs = {"on": [], "off": []}, []
        for round_number in range(ROUNDS):
            for mode in (("on", "off") if round_number % 2 == 0 else ("off", "on")):
                with schema_context(SCHEMA):
                    Receptionist.objects.update(enabled=mode == "on")
                events = [event(last_rule if i % 2 == 0 else "just saying hello") for i in range(RATE_MESSAGES)]
                began = time.perf_counter()
                for inbound in events:
                    handlers.apply(inbound)
                rates[mode].append(RATE_MESSAGES / (time.perf_counter() - began))
            costs.append(1 - rates["on"][-1] / rates["off"][-1])
            print(f"round {round_number + 1}: automation on {rates['on'][-1]:.0f}/s, off {rates['off'][-1]:.0f}/s, "
                  f"cost {costs[-1]:.1%}")
        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
        cost = statistics.median(costs)
        print(f"inbound rate (medians of {ROUNDS} rounds): automation on {on:.0f}/s, off {off:.0f}/s; "
              f"cost (median of the rounds' on/off pairs) {cost:.1%}")
        emit({"bench": "automation", "messages": MESSAGES, "rules": RULES, "reply_p50_ms": round(p50, 2),
              "reply_p99_ms": round(p99, 2),
              "baseline_p50_ms": round(base50, 2), "baseline_p99_ms": round(base99, 2),
              "p50_ratio": round(p50 / base50, 2), "p99_ratio": round(p99 / base99, 2),
              "inbound_per_s_on": round(on, 1), "inbound_per_s_off": round(off, 1),
              "automation_cost": round(cost, 3)})


if __name__ == "__main__":
    main()
