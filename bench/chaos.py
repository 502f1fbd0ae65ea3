"""Chaos bench (issue 11): N sends and M inbound messages through the HTTP API while the `whatsapp` session host and
the default worker are SIGKILLed on a schedule, with real processes as the Procfile runs them (web, worker,
whatsapp, beat) on the simulator, and a local webhook receiver (bench/_receiver.py) subscribed to every event.

Every kill is of the whole process group, with no warning; a new process with the same command line is started
at once (a supervisor would). The bench then waits for the system to settle and counts, against what the simulated
WhatsApp recorded (its outbox and inbound logs, which survive the kills):
- lost: messages accepted by the API (202) that never reached a final state (no row, or still queued/sending);
- duplicated: sends WhatsApp received more than once;
- in doubt: messages reported `failed` with `host_lost` (WhatsApp may have them);
- unresolved receipts: messages WhatsApp accepted that are not `read` once settled;
- inbound lost / twice: messages WhatsApp accepted for the device that are not stored / stored twice;
- takeover p50/p99: from a host's SIGKILL until another host runs its session, connected;
- webhook lag p50/p99: from a delivery's creation (the event) to its first arrival at the receiver; webhooks
  lost (not delivered once settled) and received twice;
- settle: from the last accepted send until nothing is left to do.

Small defaults, a few minutes on 2 CPUs: CHAOS_SENDS=300 CHAOS_INBOUND=100 CHAOS_KILLS=5 (host, worker, host, …)
CHAOS_KILL_EVERY=10 (s) CHAOS_RATE=4 (sends/s). Not part of the test suite: `make bench NAME=chaos`.
"""
import collections
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_DIR, bench_database, emit, quiet_logging  # noqa: E402
from send_pipeline import SESSION, TO, Servers, link_session, log, redis_url_with_db, setup_tenant  # noqa: E402

SENDS = int(os.environ.get("CHAOS_SENDS", "300"))
INBOUND = int(os.environ.get("CHAOS_INBOUND", "100"))
KILLS = int(os.environ.get("CHAOS_KILLS", "5"))
KILL_EVERY = float(os.environ.get("CHAOS_KILL_EVERY", "10"))
RATE = float(os.environ.get("CHAOS_RATE", "4"))
REDIS_DB = int(os.environ.get("CHAOS_BENCH_REDIS_DB", "7"))
SETTLE_TIMEOUT = float(os.environ.get("CHAOS_SETTLE_TIMEOUT", "180"))
EVENTS = ["message.sent", "message.delivered", "message.read", "message.failed", "message.received"]


def main():
    import environ

    env = environ.Env()
    environ.Env.read_env(BASE_DIR / "var" / "runtime.env")
    environ.Env.read_env(BASE_DIR / ".env")
    os.environ["REDIS_URL"] = redis_url_with_db(env("REDIS_URL", default="redis://127.0.0.1:6379/0"), REDIS_DB)
    os.environ.setdefault("DEBUG", "true")
    os.environ["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"  # the receiver is on loopback
    # One key for this process and the servers: the endpoint's secret is encrypted here and read there.
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
        os.environ.pop(name, None)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with bench_database(log=log) as dbname:
        quiet_logging()
        figures = run(dbname)
    emit(figures)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values, fraction):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * fraction))], 2)


class ChaosServers(Servers):
    """send_pipeline's three processes plus beat (the sweeper, the webhook retries), and SIGKILL + restart."""

    def __init__(self, work_dir, env):
        super().__init__(work_dir, env)
        self.argv["beat"] = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "WARNING",
                             "-S", "django_celery_beat.schedulers:DatabaseScheduler",
                             "--pidfile", str(Path(work_dir) / "beat.pid")]
        self.generation = collections.Counter()

    def start(self, celery_app):
        beat = self.argv.pop("beat")
        super().start(celery_app)
        self.argv["beat"] = beat
        self._spawn("beat", self.env)

    def kill_and_restart(self, name, celery_app):
        """SIGKILL the process group; start the same command under a new Celery name; return once it answers."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.generation[name] += 1
        argv = self.argv[name]
        new_name = f"bench-{name}-{secrets.token_hex(3)}@{socket.gethostname()}"
        argv[argv.index("-n") + 1] = new_name
        if name == "whatsapp":
            self.whatsapp_name = new_name
        else:
            self.default_name = new_name
        self._spawn(name, self.env)
        deadline = time.monotonic() + 90
        while not celery_app.control.ping(destination=[new_name], timeout=0.5):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not come back:\n{self.log(name)}")
        return self.procs[name].pid


class Posters:
    """Sends (with Idempotency-Keys, retried until accepted) and inbound messages (test helper, retried on 409),
    at a steady rate on a few threads."""

    def __init__(self, url, headers, run_id):
        self.url, self.headers, self.run_id = url, headers, run_id
        self.accepted = {}  # send index -> message id
        self.inbound_posted = 0
        self.retries = collections.Counter()
        self.errors = []
        self.last_accept_at = None
        self._lock = threading.Lock()
        self._next = 0
        self._started = time.monotonic()
        self.threads = [threading.Thread(target=self._sends, daemon=True) for _ in range(4)]
        self.threads.append(threading.Thread(target=self._inbound, daemon=True))
        for thread in self.threads:
            thread.start()

    def _take(self):
        with self._lock:
            if self._next >= SENDS:
                return None
            index, self._next = self._next, self._next + 1
        wait = self._started + index / RATE - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return index

    def _post(self, client, path, body, headers, ok, what):
        deadline = time.monotonic() + 300
        while True:
            try:
                response = client.post(path, json=body, headers=headers)
                reason = str(response.status_code)
                if response.status_code in ok:
                    return response
                if response.status_code < 500 and response.status_code not in (409, 429):
                    self.errors.append(f"{what}: {response.status_code} {response.text[:200]}")
                    return None
                reason += f" {response.json().get('error', {}).get('code', '')}" if response.status_code < 500 else ""
            except Exception as exc:  # the web process or the network in trouble: same request again
                reason = type(exc).__name__
            self.retries[reason] += 1
            if time.monotonic() > deadline:
                self.errors.append(f"{what}: not accepted in 300 s ({reason})")
                return None
            time.sleep(0.2)

    def _sends(self):
        import httpx

        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            while (index := self._take()) is not None:
                response = self._post(client, "/api/v1/messages",
                                      {"session": SESSION, "to": TO, "text": f"chaos {self.run_id} #{index:05d}"},
                                      {"Idempotency-Key": f"chaos-{self.run_id}-{index}"}, (200, 202), f"send {index}")
                if response is not None:
                    with self._lock:
                        self.accepted[index] = response.json()["data"]["id"]
                        self.last_accept_at = time.monotonic()

    def _inbound(self):
        import httpx

        interval = SENDS / RATE / max(1, INBOUND)
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            for i in range(INBOUND):
                time.sleep(interval)
                response = self._post(client, f"/api/v1/test-helpers/sessions/{SESSION}/inbound",
                                      {"from": f"+62812345678{i % 100:02d}", "text": f"chaos in {self.run_id} #{i}"},
                                      {}, (202,), f"inbound {i}")
                if response is not None:
                    self.inbound_posted += 1

    def join(self):
        for thread in self.threads:
            thread.join(timeout=600)


def run(dbname):
    import httpx
    import redis
    from django.db import connection
    from django.utils import timezone
    from django_tenants.utils import tenant_context

    from config.celery import app
    from whatsapp.host.models import SessionLease
    from whatsapp.models import Message, WebhookDelivery, WhatsAppSession
    from whatsapp.providers import simulator_outbox
    from whatsapp.webhooks import actions as webhooks

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    app.conf.broker_url = os.environ["REDIS_URL"]
    tenant, raw_key = setup_tenant()
    work_dir = tempfile.mkdtemp(prefix="chaos-bench-")
    store = str(Path(work_dir) / "store")
    receiver_port = free_port()
    receiver = subprocess.Popen([sys.executable, str(BASE_DIR / "bench" / "_receiver.py"), str(receiver_port)],
                                stdout=subprocess.PIPE, start_new_session=True)
    receiver.stdout.readline()  # "ready"
    with tenant_context(tenant):
        webhooks.create_endpoint(tenant, acting_user=None, url=f"http://127.0.0.1:{receiver_port}/hook", events=EVENTS)
    connection.set_schema_to_public()
    env = {**os.environ, "DEBUG": "false",
           "ALLOWED_HOSTS": "127.0.0.1,localhost,.localhost", "SECURE_SSL_REDIRECT": "false",
           "DATABASE_CONN_MAX_AGE": "60", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
           "WHATSAPP_PROVIDER": "simulator", "WHATSAPP_STORE_DIR": store, "WHATSAPP_PACING_ENABLED": "false",
           "WHATSAPP_RATE_LIMIT_PER_COMPANY": "-1", "WHATSAPP_SIMULATOR_DELIVERED_SECONDS": "1",
           "WHATSAPP_SIMULATOR_READ_SECONDS": "3", "WHATSAPP_RECONNECT_DELAY": "500"}
    servers = ChaosServers(work_dir, env)
    headers = {"Authorization": f"Bearer {raw_key}"}
    log(f"{os.cpu_count()} CPUs; {SENDS} sends at {RATE:g}/s, {INBOUND} inbound, {KILLS} SIGKILLs every "
        f"{KILL_EVERY:g} s (whatsapp, worker, …); lease TTL {env.get('WHATSAPP_LEASE_TTL_SECONDS', '10')} s; "
        f"logs in {work_dir}")
    try:
        servers.start(app)
        with httpx.Client(base_url=servers.url, headers=headers, timeout=30) as client:
            link_session(client)
        with tenant_context(tenant):
            session_id = WhatsAppSession.objects.get(name=SESSION).pk
        key = f"{tenant.schema_name}:{session_id}"
        log("session linked; chaos starts")

        def connected_at():
            with tenant_context(tenant):
                return WhatsAppSession.objects.get(pk=session_id).connected_at

        def taken_over_by(pid, since):
            lease = SessionLease.objects.filter(schema_name=tenant.schema_name, session_id=session_id).first()
            holder = lease.host_id if lease and lease.lease_expires_at and lease.lease_expires_at > timezone.now() \
                else ""
            if holder.count(":") < 2 or int(holder.split(":")[1]) != pid:
                return False
            with tenant_context(tenant):
                session = WhatsAppSession.objects.get(pk=session_id)
            return session.status == WhatsAppSession.Status.CONNECTED and session.connected_at > since

        run_id = secrets.token_hex(3)
        posters = Posters(servers.url, headers, run_id)
        takeovers, kills = [], []
        for n in range(KILLS):
            time.sleep(KILL_EVERY)
            name = "whatsapp" if n % 2 == 0 else "worker"
            since = connected_at()
            killed_at = time.monotonic()
            pid = servers.kill_and_restart(name, app)
            kills.append(name)
            if name == "whatsapp":
                while not taken_over_by(pid, since):
                    if time.monotonic() - killed_at > 120:
                        raise RuntimeError("no takeover within 120 s")
                    time.sleep(0.1)
                takeovers.append(time.monotonic() - killed_at)
                log(f"kill {n + 1}: whatsapp SIGKILLed; another host runs the session after {takeovers[-1]:.1f} s")
            else:
                log(f"kill {n + 1}: worker SIGKILLed and restarted in {time.monotonic() - killed_at:.1f} s")
        posters.join()
        last_accept = posters.last_accept_at or time.monotonic()
        log(f"{len(posters.accepted)} sends and {posters.inbound_posted} inbound accepted by the API; "
            f"retries {dict(posters.retries)}; errors {len(posters.errors)} {posters.errors[:3]}")

        # --- settle -------------------------------------------------------------------------------------------
        def state():
            with tenant_context(tenant):
                rows = {m.pk: m for m in Message.objects.filter(direction=Message.Direction.OUT)}
                inbound = collections.Counter(Message.objects.filter(direction=Message.Direction.IN)
                                              .values_list("provider_message_id", flat=True))
                pending_hooks = WebhookDelivery.objects.exclude(status="succeeded").count()
            return rows, inbound, pending_hooks

        S = Message.Status
        settled_at = None
        while time.monotonic() - last_accept < SETTLE_TIMEOUT:
            rows, inbound, pending_hooks = state()
            outbox = {r["id"] for r in simulator_outbox.read(store) if r["session"] == key}
            received = {r["id"] for r in simulator_outbox.read_inbound(store) if r["session"] == key}
            by_provider = {m.provider_message_id: m for m in rows.values()}
            busy = any(m.status in (S.QUEUED, S.SENDING) for m in rows.values())
            receipts_owed = any(by_provider[i].status != S.READ for i in outbox if i in by_provider
                                and by_provider[i].status != S.FAILED)
            if not busy and not receipts_owed and received <= set(inbound) and pending_hooks == 0:
                settled_at = time.monotonic()
                break
            time.sleep(0.5)

        # --- figures ------------------------------------------------------------------------------------------
        rows, inbound, pending_hooks = state()
        texts = {f"chaos {run_id} #{i:05d}": i for i in range(SENDS)}
        sends = [r for r in simulator_outbox.read(store) if r["session"] == key]
        copies = collections.Counter(r["text"] for r in sends)
        received = [r["id"] for r in simulator_outbox.read_inbound(store) if r["session"] == key]
        accepted_ids = set(posters.accepted.values())
        lost = [pk for pk in accepted_ids if pk not in rows or rows[pk].status in (S.QUEUED, S.SENDING)]
        in_doubt = [m for m in rows.values() if m.status == S.FAILED and m.failure_reason.startswith("host_lost")]
        by_provider = {m.provider_message_id: m for m in rows.values()}
        unresolved = [r["id"] for r in sends if r["id"] in by_provider
                      and by_provider[r["id"]].status not in (S.READ,)
                      and not (by_provider[r["id"]].status == S.FAILED)]
        statuses = collections.Counter(m.status for m in rows.values())
        arrivals = httpx.get(f"http://127.0.0.1:{receiver_port}/stats", timeout=30).json()
        first_arrival, arrived = {}, collections.Counter()
        for webhook_id, at in arrivals:
            arrived[webhook_id] += 1
            first_arrival.setdefault(webhook_id, at)
        with tenant_context(tenant):
            deliveries = list(WebhookDelivery.objects.values_list("webhook_id", "created_at", "status"))
            stuck = WebhookDelivery.objects.exclude(status="succeeded").order_by("pk").first()
        if stuck is not None:
            log(f"webhook deliveries by status {dict(collections.Counter(d[2] for d in deliveries))}; one not "
                f"delivered: attempts {stuck.attempts}, last error {stuck.last_error[:200]!r}")
        lags = [first_arrival[w] - created.timestamp() for w, created, _ in deliveries if w in first_arrival]
        figures = {
            "bench": "chaos", "sends": SENDS, "inbound": INBOUND, "kills": dict(collections.Counter(kills)),
            "accepted": len(accepted_ids), "lost": len(lost),
            "duplicated": sum(n - 1 for t, n in copies.items() if t in texts and n > 1),
            "in_doubt": len(in_doubt), "failed": statuses.get(S.FAILED, 0), "unresolved_receipts": len(unresolved),
            "inbound_accepted_by_whatsapp": len(set(received)),
            # Test-helper commands queued for a host that was then killed never reach the simulated WhatsApp (as a
            # contact's message that never left the phone): not a loss of ours, counted apart.
            "inbound_never_reached_whatsapp": posters.inbound_posted - len(set(received)),
            "inbound_lost": len(set(received) - set(inbound)),
            "inbound_stored_twice": sum(1 for n in inbound.values() if n > 1),
            "takeover_p50_s": pct(takeovers, 0.5), "takeover_p99_s": pct(takeovers, 0.99),
            "webhooks": len(deliveries), "webhooks_not_delivered": pending_hooks,
            "webhooks_received_twice": sum(1 for n in arrived.values() if n > 1),
            "webhook_lag_p50_s": pct(lags, 0.5), "webhook_lag_p99_s": pct(lags, 0.99),
            "settle_s": round(settled_at - last_accept, 1) if settled_at else None,
            "api_errors": len(posters.errors),
        }
        log(f"final statuses {dict(statuses)}; WhatsApp received {len(sends)} sends of {len(copies)} messages")
        log(f"lost {figures['lost']}, duplicated {figures['duplicated']}, in doubt {figures['in_doubt']}, "
            f"unresolved receipts {figures['unresolved_receipts']}, inbound lost {figures['inbound_lost']} of "
            f"{figures['inbound_accepted_by_whatsapp']} (stored twice {figures['inbound_stored_twice']})")
        log(f"takeover p50 {figures['takeover_p50_s']} s / p99 {figures['takeover_p99_s']} s over {len(takeovers)}; "
            f"webhook lag p50 {figures['webhook_lag_p50_s']} s / p99 {figures['webhook_lag_p99_s']} s over "
            f"{len(lags)} ({pending_hooks} not delivered, {figures['webhooks_received_twice']} received twice); "
            f"settled {figures['settle_s']} s after the last accepted send")
        return figures
    finally:
        servers.stop()
        os.killpg(receiver.pid, signal.SIGKILL)
        receiver.wait()


if __name__ == "__main__":
    main()
