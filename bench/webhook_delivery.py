"""Webhook delivery throughput and latency: the pump (whatsapp.webhooks.pump) against a fast local receiver.

Real parts on loopback: Postgres (a throwaway database, one tenant), a receiver process answering 204 at once over
keep-alive HTTP/1.1 (bench/_receiver.py), 10 endpoints on it, and one endpoint that accepts connections and never
answers. The pump runs in a process of its own (as in a `worker`), DEBUG off. Measured in one run, ROUNDS times in
turn (medians reported):
  burst      EVENTS deliveries (EVENTS/10 events x 10 endpoints) stored at once, then pumped: deliveries/s until
             the last live one arrived; once without, once with the dead endpoint subscribed too (its cost)
  bare loop  the same signed payloads POSTed one after another with one pooled httpx client: the rate a single
             sender reaches on this machine at that moment, to compare with
then once:
  steady     RATE deliveries/s offered to the live endpoints for SECONDS (the dead endpoint subscribed too): event
             -> receiver lag p50/p99 (the event's commit to its arrival)
Last line: one JSON object.
"""
import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_DIR, bench_database, emit, quiet_logging  # noqa: E402

EVENTS = int(os.environ.get("WEBHOOK_BENCH_EVENTS", "20000"))
ENDPOINTS = 10
ROUNDS = int(os.environ.get("WEBHOOK_BENCH_ROUNDS", "3"))
RATE = int(os.environ.get("WEBHOOK_BENCH_RATE", "1000"))
SECONDS = int(os.environ.get("WEBHOOK_BENCH_SECONDS", "20"))
SCHEMA = "t_bench_webhooks"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    # No connection pool: the pump process is forked, and a pool would hand both processes the same sockets.
    os.environ.update({"WEBHOOK_ALLOW_PRIVATE_TARGETS": "true", "DEBUG": "false", "LOG_LEVEL": "WARNING",
                       "DATABASE_POOL": "false",
                       "SECRET_KEY": secrets.token_urlsafe(48)})
    os.environ.setdefault("WEBHOOK_TIMEOUT_SECONDS", "5")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, str(BASE_DIR / "bench" / "_receiver.py"), str(port)],
                                stdout=subprocess.PIPE, text=True)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(1024)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        with bench_database():
            quiet_logging()
            figures = run(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead.getsockname()[1]}/dead")
    finally:
        receiver.terminate()
        receiver.wait(10)
        dead.close()
    emit(figures)


def _pump_forever(stop):
    """The child process: what a worker does when woken over and over (pump until nothing is due, again)."""
    from django_tenants.utils import schema_context

    from whatsapp.webhooks import pump

    pump.wake = lambda schema_name, now=None: False  # the loop below is the wake
    with schema_context(SCHEMA):
        while not stop.is_set():
            pump.pump(SCHEMA)
            time.sleep(0.005)  # about a woken task's latency


class Pumping:
    """The pump in a forked process for the `with` block (the database connection is not shared across the fork)."""

    def __enter__(self):
        from django.db import connections

        connections.close_all()
        context = multiprocessing.get_context("fork")
        self.stop = context.Event()
        self.process = context.Process(target=_pump_forever, args=(self.stop,), daemon=True)
        self.process.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


def run(base, dead_url):
    import httpx
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from core import rows
    from tenants.models import Plan, Tenant
    from tenants.pool import create_and_migrate_schema
    from whatsapp.models import WebhookDelivery, WebhookEndpoint
    from whatsapp.webhooks import actions, pump
    from whatsapp.webhooks import delivery as wire

    create_and_migrate_schema(SCHEMA)
    tenant = Tenant.objects.create(name="Bench", slug="bench", schema_name=SCHEMA, status="active",
                                   plan=Plan.objects.get(code="pro"), approved_at=timezone.now())
    connection.set_tenant(tenant)
    pump.wake = lambda schema_name, now=None: False  # the bench runs the pump itself
    live = [actions.create_endpoint(tenant, acting_user=None, url=f"{base}/e{i}", events=["message.sent"])[0]
            for i in range(ENDPOINTS)]
    silent = actions.create_endpoint(tenant, acting_user=None, url=dead_url, events=["message.sent"],
                                     enabled=False)[0]
    per_endpoint = EVENTS // ENDPOINTS
    stats = httpx.Client(base_url=base, timeout=60)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine); {EVENTS} deliveries "
          f"({per_endpoint} events x {ENDPOINTS} endpoints), {settings.WEBHOOK_CONCURRENCY_PER_ENDPOINT} in flight "
          f"per endpoint, timeout {settings.WEBHOOK_TIMEOUT_SECONDS:g} s, {ROUNDS} rounds", flush=True)

    def arrivals():
        return stats.get("/stats").json()

    def fresh(with_dead):
        """An empty delivery table (not a bloated one from the previous round) and endpoints without backoff."""
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {rows.table(WebhookDelivery)}")
        WebhookEndpoint.objects.update(failure_streak=0, backoff_until=None)
        WebhookEndpoint.objects.filter(pk=silent.pk).update(enabled=with_dead)
        stats.get("/reset")

    def stored(count):
        for start in range(0, count, 500):
            actions.emit_events("message.sent", [{"id": i, "status": "sent", "to": "+14155550123",
                                                  "text": "Hello from the bench"}
                                                 for i in range(start, min(count, start + 500))])
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {rows.table(WebhookDelivery)}")

    def burst(with_dead):
        fresh(with_dead)
        stored(per_endpoint)
        live_ids = set(WebhookDelivery.objects.filter(endpoint__in=live).values_list("webhook_id", flat=True))
        started = time.time()
        with Pumping():
            while True:
                arrived = [t for webhook_id, t in arrivals() if webhook_id in live_ids]
                if len(arrived) >= len(live_ids):
                    break
                time.sleep(0.2)
        took = max(arrived) - started
        rate = len(live_ids) / took
        print(f"  burst {'with' if with_dead else 'without'} the dead endpoint: {len(live_ids)} live deliveries in "
              f"{took:.1f} s = {rate:.0f}/s", flush=True)
        return rate

    def bare_loop():
        """The live deliveries of the last burst, POSTed again one at a time."""
        deliveries = list(WebhookDelivery.objects.filter(endpoint__in=live).select_related("endpoint"))
        keys = {e.pk: wire.decrypt_secret(e.secret_encrypted) for e in live}
        started = time.monotonic()
        with httpx.Client(timeout=10) as client:
            for delivery in deliveries:
                body = wire.body_of(delivery)
                headers = wire.signed_headers(keys[delivery.endpoint_id], delivery.webhook_id, body, timezone.now())
                assert client.post(delivery.endpoint.url, content=body.encode(), headers=headers).status_code == 204
        took = time.monotonic() - started
        rate = len(deliveries) / took
        print(f"  bare loop (one pooled client, one at a time): {len(deliveries)} in {took:.1f} s = {rate:.0f}/s",
              flush=True)
        return rate

    def steady():
        fresh(True)
        events_per_tick = max(1, RATE // ENDPOINTS // 20)
        with Pumping():
            started = time.monotonic()
            for tick in range(SECONDS * 20):
                actions.emit_events("message.sent", [{"id": tick * 1000 + i, "status": "sent"}
                                                     for i in range(events_per_tick)])
                time.sleep(max(0.0, started + (tick + 1) / 20 - time.monotonic()))
            created = dict(WebhookDelivery.objects.filter(endpoint__in=live).values_list("webhook_id", "created_at"))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                seen = {webhook_id: t for webhook_id, t in arrivals() if webhook_id in created}
                if len(seen) >= len(created):
                    break
                time.sleep(0.5)
        lags = sorted(seen[w] - created[w].timestamp() for w in seen)
        p50, p99 = statistics.median(lags), lags[int(len(lags) * 0.99) - 1]
        offered = events_per_tick * 20 * ENDPOINTS
        print(f"steady {offered} deliveries/s to {ENDPOINTS} live endpoints + the dead one for {SECONDS} s: "
              f"{len(seen)}/{len(created)} arrived, lag p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms", flush=True)
        return offered, len(created) - len(seen), p50, p99

    without_dead, bare, with_dead = [], [], []
    for number in range(1, ROUNDS + 1):
        print(f"round {number} (load average {os.getloadavg()[0]:.1f})", flush=True)
        without_dead.append(burst(False))
        bare.append(bare_loop())
        with_dead.append(burst(True))
    offered, missing, p50, p99 = steady()
    pumped, alone, shared = (statistics.median(x) for x in (without_dead, bare, with_dead))
    cost = (pumped - shared) / pumped * 100
    print(f"medians: pump {pumped:.0f}/s vs bare loop {alone:.0f}/s (ratio {pumped / alone:.2f}); with the dead "
          f"endpoint {shared:.0f}/s (it costs the others {cost:.0f} %)", flush=True)
    return {"bench": "webhook_delivery", "deliveries": EVENTS, "rounds": ROUNDS, "pump_per_s": round(pumped),
            "pump_with_dead_endpoint_per_s": round(shared), "bare_loop_per_s": round(alone),
            "ratio_to_bare_loop": round(pumped / alone, 2), "dead_endpoint_cost_pct": round(cost, 1),
            "steady_offered_per_s": offered, "lag_p50_ms": round(p50 * 1000), "lag_p99_ms": round(p99 * 1000),
            "steady_missing": missing}


if __name__ == "__main__":
    main()
