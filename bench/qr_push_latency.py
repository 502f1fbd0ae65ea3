"""Provider event → websocket client: how long a QR rotation takes to reach the session page.

Real parts on loopback: a daphne process serving config.asgi (the session consumer, behind the tenant
middleware), Redis as the channel layer, Postgres. This process plays the session host: for each of N QR
events it calls SessionHost.handle (the publisher's work: session row update in the tenant schema, activity,
group_send) and a websocket client logged in as the tenant's owner waits for that QR code to arrive.
Events go one at a time, so the figure is latency, not queueing. Last line: one JSON object.
"""
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_DIR, bench_database, quiet_logging  # noqa: E402

EVENTS = int(os.environ.get("QR_BENCH_EVENTS", "1000"))
REDIS_DB = 13  # not the dev broker (0), `make test` (15) or browser tests (14)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_url_with_db(url, db):
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def main():
    import environ

    env = environ.Env()
    environ.Env.read_env(BASE_DIR / "var" / "runtime.env")
    environ.Env.read_env(BASE_DIR / ".env")
    os.environ["REDIS_URL"] = redis_url_with_db(env("REDIS_URL", default="redis://127.0.0.1:6379/0"), REDIS_DB)
    os.environ.setdefault("DEBUG", "true")
    with bench_database() as dbname:
        quiet_logging()
        figures = run(dbname)
    print(json.dumps(figures))


def run(dbname):
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Membership, User
    from tenants.models import Plan, Tenant
    from tenants.pool import create_and_migrate_schema
    from whatsapp.host.runtime import SessionHost
    from whatsapp.models import WhatsAppSession
    from whatsapp.providers.base import EventKind, ProviderEvent
    from whatsapp.providers.simulator import SimulatorProvider

    schema = "t_bench_qr"
    create_and_migrate_schema(schema)
    tenant = Tenant.objects.create(name="Bench", slug="bench", schema_name=schema, status="active",
                                   plan=Plan.objects.get(code="pro"), approved_at=timezone.now())
    user = User.objects.create_user("owner@bench.test", "x" * 20)
    Membership.objects.create(user=user, tenant=tenant, role="owner")
    connection.set_tenant(tenant)
    session = WhatsAppSession.objects.create(name="front-desk", should_run=True)
    connection.set_schema_to_public()
    store = SessionStore()
    store[SESSION_KEY], store[BACKEND_SESSION_KEY] = str(user.pk), settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()

    port = free_port()
    env = {**os.environ, "DATABASE_URL": os.environ["DATABASE_URL"], "DATABASE_CONN_MAX_AGE": "60"}
    web = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                            "config.asgi:application"], cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except Exception:
                if time.time() > deadline or web.poll() is not None:
                    raise RuntimeError("daphne did not start")
                time.sleep(0.2)
        host = SessionHost(SimulatorProvider, store_dir="/tmp", host_id="bench")
        key = f"{schema}:{session.pk}"
        latencies = asyncio.run(measure(port, store.session_key, host, key, EventKind, ProviderEvent))
    finally:
        web.terminate()
        web.wait(timeout=10)
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{len(ms)} QR events, provider event → websocket client on loopback: "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms (target p99 < 50 ms)")
    return {"bench": "qr_push_latency", "events": len(ms), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
            "max_ms": round(ms[-1], 2)}


async def measure(port, session_key, host, key, EventKind, ProviderEvent):
    import websockets

    headers = {"Cookie": f"sessionid={session_key}", "Origin": f"http://127.0.0.1:{port}"}
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/sessions/front-desk/",
                                  additional_headers=headers, max_size=None) as ws:
        await ws.recv()  # the snapshot
        loop = asyncio.get_running_loop()
        latencies = []
        for i in range(EVENTS):
            code = f"2@bench{i},k1,k2,k3"
            sent = time.perf_counter()
            # The publisher's work, on a thread like the host's publisher (Django ORM is sync).
            await loop.run_in_executor(None, host.handle,
                                       ProviderEvent(key, EventKind.QR, {"code": code, "expires_in": 20}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                if message.get("type") == "session.update" and message["data"].get("qr_code") == code:
                    break
            latencies.append(time.perf_counter() - sent)
        return latencies


if __name__ == "__main__":
    main()
