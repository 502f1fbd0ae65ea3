"""Webhook delivery throughput and latency: the pump (whatsapp.webhooks.pump) against a fast local receiver.

Real parts on loopback: Postgres (a throwaway database, one tenant), a receiver process answering 204 at once over
keep-alive HTTP/1.1 (bench/_receiver.py), 10 endpoints on it, and optionally one endpoint that accepts connections
and never answers. Measured in one run:
  burst      EVENTS deliveries (EVENTS/10 events x 10 endpoints) stored at once, then pumped: deliveries/s until
             the last live one arrived; once without, once with the dead endpoint subscribed too (its cost)
  bare loop  the same number of signed payloads POSTed one after another with one pooled httpx client: the rate a
             single sender reaches on this machine, to compare with
  steady     RATE deliveries/s (to the live endpoints) for SECONDS while the pump runs (the dead endpoint subscribed): event -> receiver lag
             p50/p99 (the event's commit to its arrival)
Last line: one JSON object.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_DIR, bench_database, emit, quiet_logging  # noqa: E402

EVENTS = int(os.environ.get("WEBHOOK_BENCH_EVENTS", "20000"))
ENDPOINTS = 10
RATE = int(os.environ.get("WEBHOOK_BENCH_RATE", "300"))
SECONDS = int(os.environ.get("WEBHOOK_BENCH_SECONDS", "20"))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url):
    import httpx

    return httpx.get(url, timeout=60).json() if url.endswith("/stats") else httpx.get(url, timeout=60)


def main():
    os.environ["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"
    os.environ.setdefault("WEBHOOK_TIMEOUT_SECONDS", "5")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, str(BASE_DIR / "bench" / "_receiver.py"), str(port)],
                                stdout=subprocess.PIPE, text=True)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(1024)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        with bench_database() as dbname:
            quiet_logging()
            figures = run(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead.getsockname()[1]}/dead")
    finally:
        receiver.terminate()
        receiver.wait(10)
        dead.close()
    emit(figures)


def run(base, dead_url):
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from tenants.models import Plan, Tenant
    from tenants.pool import create_and_migrate_schema
    from whatsapp.models import WebhookDelivery, WebhookEndpoint
    from whatsapp.webhooks import actions, pump
    from whatsapp.webhooks import delivery as wire

    schema = "t_bench_webhooks"
    create_and_migrate_schema(schema)
    tenant = Tenant.objects.create(name="Bench", slug="bench", schema_name=schema, status="active",
                                   plan=Plan.objects.get(code="pro"), approved_at=timezone.now())
    connection.set_tenant(tenant)
    pump.wake = lambda schema_name: False  # the bench runs the pump itself
    live = [actions.create_endpoint(tenant, acting_user=None, url=f"{base}/e{i}", events=["message.sent"])[0]
            for i in range(ENDPOINTS)]
    silent = actions.create_endpoint(tenant, acting_user=None, url=dead_url, events=["message.sent"],
                                     enabled=False)[0]
    per_endpoint = EVENTS // ENDPOINTS
    print(f"{EVENTS} deliveries ({per_endpoint} events x {ENDPOINTS} endpoints), "
          f"{settings.WEBHOOK_CONCURRENCY_PER_ENDPOINT} in flight per endpoint, timeout "
          f"{settings.WEBHOOK_TIMEOUT_SECONDS:g} s", flush=True)

    def stored(count):
        for start in range(0, count, 500):
            actions.emit_events("message.sent", [{"id": i, "status": "sent", "to": "+14155550123",
                                                  "text": "Hello from the bench"}
                                                 for i in range(start, min(count, start + 500))])

    def burst(with_dead):
        WebhookEndpoint.objects.filter(pk=silent.pk).update(enabled=with_dead)
        WebhookDelivery.objects.all().delete()
        get(f"{base}/reset")
        stored(per_endpoint)
        live_ids = set(WebhookDelivery.objects.filter(endpoint__in=live).values_list("webhook_id", flat=True))
        started = time.time()
        done = threading.Event()

        def pumping():
            while not done.is_set():
                pump.pump(schema)
            connection.close()

        thread = threading.Thread(target=pumping)
        with_schema(thread, schema)
        while True:
            seen = get(f"{base}/stats")
            arrived = [t for webhook_id, t in seen if webhook_id in live_ids]
            if len(arrived) >= len(live_ids):
                break
            time.sleep(0.2)
        took = max(arrived) - started
        done.set()
        WebhookEndpoint.objects.filter(pk=silent.pk).update(enabled=False)  # its in-flight ones just time out
        thread.join()
        rate = len(live_ids) / took
        print(f"burst {'with' if with_dead else 'without'} the dead endpoint: {len(live_ids)} live deliveries in "
              f"{took:.1f} s = {rate:.0f}/s", flush=True)
        return rate

    def bare_loop():
        import httpx

        WebhookDelivery.objects.all().delete()
        stored(per_endpoint)
        deliveries = list(WebhookDelivery.objects.filter(endpoint__in=live).select_related("endpoint"))
        secrets = {e.pk: wire.decrypt_secret(e.secret_encrypted) for e in live}
        started = time.monotonic()
        with httpx.Client(timeout=10) as client:
            for delivery in deliveries:
                body = wire.body_of(delivery)
                headers = wire.signed_headers(secrets[delivery.endpoint_id], delivery.webhook_id, body,
                                              timezone.now())
                assert client.post(delivery.endpoint.url, content=body.encode(), headers=headers).status_code == 204
        rate = len(deliveries) / (time.monotonic() - started)
        print(f"bare loop (one pooled client, one at a time): {len(deliveries)} in "
              f"{time.monotonic() - started:.1f} s = {rate:.0f}/s", flush=True)
        return rate

    def steady():
        WebhookEndpoint.objects.filter(pk=silent.pk).update(enabled=True)
        WebhookDelivery.objects.all().delete()
        get(f"{base}/reset")
        done = threading.Event()

        def pumping():
            while not done.is_set():
                pump.pump(schema)
                time.sleep(0.005)  # a wake's latency, roughly: the next commit's task
            connection.close()

        thread = threading.Thread(target=pumping)
        with_schema(thread, schema)
        events_per_tick = max(1, RATE // ENDPOINTS // 20)
        started = time.monotonic()
        for tick in range(SECONDS * 20):
            actions.emit_events("message.sent", [{"id": tick * 1000 + i, "status": "sent"}
                                                 for i in range(events_per_tick)])
            time.sleep(max(0.0, started + (tick + 1) / 20 - time.monotonic()))
        created = dict(WebhookDelivery.objects.filter(endpoint__in=live).values_list("webhook_id", "created_at"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = {webhook_id: t for webhook_id, t in get(f"{base}/stats") if webhook_id in created}
            if len(seen) >= len(created):
                break
            time.sleep(0.5)
        done.set()
        WebhookEndpoint.objects.filter(pk=silent.pk).update(enabled=False)
        thread.join()
        lags = sorted(seen[w] - created[w].timestamp() for w in seen)
        p50, p99 = statistics.median(lags), lags[int(len(lags) * 0.99) - 1]
        print(f"steady {events_per_tick * 20} events/s x {ENDPOINTS} live endpoints + the dead one for {SECONDS} s: "
              f"{len(seen)}/{len(created)} arrived, lag p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms", flush=True)
        return len(created) - len(seen), p50, p99

    without_dead = burst(False)
    bare = bare_loop()
    with_dead = burst(True)
    missing, p50, p99 = steady()
    cost = (without_dead - with_dead) / without_dead * 100
    print(f"pump {without_dead:.0f}/s vs bare loop {bare:.0f}/s (ratio {without_dead / bare:.2f}); the dead endpoint "
          f"costs the others {cost:.0f} %", flush=True)
    return {"bench": "webhook_delivery", "deliveries": EVENTS, "pump_per_s": round(without_dead),
            "pump_with_dead_endpoint_per_s": round(with_dead), "bare_loop_per_s": round(bare),
            "ratio_to_bare_loop": round(without_dead / bare, 2), "dead_endpoint_cost_pct": round(cost, 1),
            "steady_deliveries_per_s": max(1, RATE // ENDPOINTS // 20) * 20 * ENDPOINTS, "lag_p50_ms": round(p50 * 1000),
            "lag_p99_ms": round(p99 * 1000), "steady_missing": missing}


def with_schema(thread, schema):
    """Start `thread` with its own database connection in the tenant's schema."""
    from django.db import connection
    from django_tenants.utils import schema_context

    target = thread._target

    def run():
        with schema_context(schema):
            target()
        connection.close()

    thread._target = run
    thread.start()


if __name__ == "__main__":
    main()
