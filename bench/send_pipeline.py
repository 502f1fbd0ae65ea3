"""Messages through the whole sending pipeline: HTTP API → queued row → Celery → session host → simulator →
delivered receipt, with real processes on loopback, as the Procfile runs them: `web` (scripts/web.py: one daphne
per CPU), a `default` Celery worker (prefork, 2 processes) and a `whatsapp` worker (threads, 4) hosting one
linked session on the simulator.

Pacing, the installation's rate limit and the API throttles are off (WHATSAPP_PACING_ENABLED=false,
WHATSAPP_RATE_LIMIT_PER_COMPANY=-1, API_THROTTLE_KEY_RATE/API_THROTTLE_USER_RATE=off) and the tenant is on
Enterprise (unlimited messages per minute): the figure is the pipeline's, not a policy's.
The simulator acknowledges delivery after WHATSAPP_SIMULATOR_DELIVERED_SECONDS (0.05 s here) and sends no read
receipts, so the end-to-end figure is throughput, not the simulated recipient's delay.

Figures, from C concurrent HTTP clients (asyncio + httpx, keep-alive), each phase N messages:
- baselines on the same server with the same clients: GET /health (a plain JSON view: middleware only) and
  GET /api/v1/messages/{id} (a trivial authenticated API read: API key, tenant, one row);
- single: one message per POST /api/v1/messages, accepted and sent at once as in production: accepted per
  second, p50/p99 latency of the 202, and end to end: N /
  (first POST → the last of them `delivered` in the database, polled every 0.1 s);
- apart: single messages accepted while the session host does not consume the hosts' shared queue (where drain
  tasks go): the accept path alone, against /health (target >= 50%); then the pipeline alone drains the queue;
- batch: the same through POST /api/v1/messages/batch, B messages a request: the pipeline's throughput end to
  end (target >= 500 messages/s);
- CPU per message of each process in each phase (from /proc: web, the default worker, the whatsapp worker,
  this client; the rest of the machine is Postgres, Redis and whatever else runs there);
- the speed path's switches, each gain measured again: the accept path alone (as in "apart") with a fresh web
  process per run, as it runs by default (statements written out by core.rows, config.http's one-hop handler),
  with SPEED_PATH_SQL=false (the ORM compiles those statements) and with ASGI_HANDLER=stock (Django's handler);
  R rounds, the order turning each round; medians, the default's rate over each switch's (rows_vs_orm_ratio,
  handler_ratio), and the web process's CPU per message; and with the API throttles counting every request at
  rates too high to refuse (unthrottled_vs_throttled_ratio): what core.throttles costs the accept path;
- encryption at rest: the same accept path with WHATSAPP_ENCRYPT_MESSAGES=true (bodies and the conversation
  preview encrypted on the way in, decrypted on the way out), in the same rounds: its rate over the default's
  (encrypted_vs_plain_ratio) and its web CPU per message over the default's;
- analytics on vs off: the batch phase (POST /api/v1/messages/batch → delivered) with the analytics counting
  trigger on the tenant's whatsapp_message (analytics.rollups.TRIGGERS, switched by rollups.set_counting while the
  pipeline is idle) disabled, then enabled, the order turning each round, over A rounds after a warm-up batch;
  medians of the end-to-end rates, pipeline_cost_pct = (off rate / on rate - 1) x 100 (issue 13: within 5%). The
  counter rows an "on" phase appends are folded into the rollups after it, outside the timing (beat's job in
  production), and each phase's counter rows are reported (none with the trigger off: the switch works). The
  trigger is left enabled.

SEND_BENCH_MESSAGES (or argv[1]) sets N (default 2000), SEND_BENCH_CLIENTS sets C (default 16),
SEND_BENCH_BATCH sets B (default 100), SEND_BENCH_BASELINE sets the requests per baseline (default 2000),
SEND_BENCH_VARIANT_ROUNDS sets R (default 3; 0 skips the switches), SEND_BENCH_WARM_UP the messages a fresh web
process accepts before it is measured (default 200), SEND_BENCH_ANALYTICS_ROUNDS sets A (default 3; 0 skips the
analytics comparison). SEND_BENCH_ONLY=analytics runs the analytics comparison alone (no baselines, single, apart,
batch or switches), to keep the run short. Last line: one JSON object.
"""
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASE_DIR, bench_database, emit, quiet_logging  # noqa: E402

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("SEND_BENCH_MESSAGES", "2000"))
CLIENTS = int(os.environ.get("SEND_BENCH_CLIENTS", "16"))
BATCH = int(os.environ.get("SEND_BENCH_BATCH", "100"))
BASELINE_REQUESTS = int(os.environ.get("SEND_BENCH_BASELINE", "2000"))
VARIANT_ROUNDS = int(os.environ.get("SEND_BENCH_VARIANT_ROUNDS", "3"))
WARM_UP = int(os.environ.get("SEND_BENCH_WARM_UP", "200"))
ANALYTICS_ROUNDS = int(os.environ.get("SEND_BENCH_ANALYTICS_ROUNDS", "3"))
ONLY = os.environ.get("SEND_BENCH_ONLY", "").strip().lower()
if ONLY not in ("", "analytics"):
    sys.exit(f"SEND_BENCH_ONLY: {ONLY!r} is not one of: analytics")
# The web process's settings per variant of the accept path: as it runs by default, and with one speed-path switch
# off each. "default" is the rows side of rows vs ORM and the custom side of custom vs stock handler.
# "throttled" counts every request in the API throttles (core.throttles, off in every other run here) at rates
# too high to refuse any: what counting costs the accept path. "encrypted" is a cost too: message bodies encrypted
# at rest (WHATSAPP_ENCRYPT_MESSAGES; every process has the same keyring, so the session host reads what the web
# process wrote).
VARIANTS = {"default": {}, "orm": {"SPEED_PATH_SQL": "false"}, "stock handler": {"ASGI_HANDLER": "stock"},
            "throttled": {"API_THROTTLE_KEY_RATE": "100000000/min", "API_THROTTLE_USER_RATE": "100000000/min"},
            "encrypted": {"WHATSAPP_ENCRYPT_MESSAGES": "true"}}
# Not the dev broker (0), `make test` (15), browser tests (14 and down, one per xdist worker) or the QR bench (13).
REDIS_DB = int(os.environ.get("SEND_BENCH_REDIS_DB", "8"))
SCHEMA = "t_bench_send"
SESSION = "bench"
TO = "+6281234567890"
TIMEOUT = 600.0
STALL_SECONDS = 20.0


def log(line):
    print(line, flush=True)


def redis_url_with_db(url, db):
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    import environ

    env = environ.Env()
    environ.Env.read_env(BASE_DIR / "var" / "runtime.env")
    environ.Env.read_env(BASE_DIR / ".env")
    os.environ["REDIS_URL"] = redis_url_with_db(env("REDIS_URL", default="redis://127.0.0.1:6379/0"), REDIS_DB)
    os.environ.setdefault("DEBUG", "true")  # this process only; the servers run with DEBUG=false
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
        os.environ.pop(name, None)  # REDIS_URL decides, for this process and the servers
    # `make bench` in the background ignores SIGINT: let SIGTERM unwind too, so the servers and database go.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with bench_database(log=log) as dbname:
        quiet_logging()
        figures = run(dbname)
    emit(figures)


class Servers:
    """The three processes, each in its own process group, output in <work dir>/<name>.log."""

    def __init__(self, work_dir, env):
        self.work_dir = work_dir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.whatsapp_name = f"bench-whatsapp-{secrets.token_hex(3)}@{socket.gethostname()}"
        self.default_name = f"bench-default-{secrets.token_hex(3)}@{socket.gethostname()}"
        common = ["-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.argv = {
            # As the Procfile runs it: WEB_CONCURRENCY daphnes (default: one per CPU), one socket each.
            "web": [sys.executable, str(BASE_DIR / "scripts" / "web.py"), "--bind", "127.0.0.1", "--port",
                    str(self.port)],
            "worker": [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default", "--concurrency", "2",
                       "-n", self.default_name, *common],
            "whatsapp": [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "whatsapp", "-P", "threads",
                         "--concurrency", "4", "-n", self.whatsapp_name, *common],
        }
        self.procs = {}

    def _spawn(self, name, env):
        if name == "web" and env.get("DATABASE_POOL", "true").lower() in ("false", "0", "no", "off"):
            # Without the pool: under ASGI every request runs its sync part on a thread of its own (Django's
            # ThreadSensitiveContext), so a persistent connection is never reused, only left open until its
            # thread is collected: 16 clients exhaust Postgres' connections. One connection per request.
            env = {**env, "DATABASE_CONN_MAX_AGE": "0"}
        with open(Path(self.work_dir) / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(self.argv[name], cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, celery_app):
        import httpx

        for name in self.argv:
            self._spawn(name, self.env)
        deadline = time.monotonic() + 90
        ready = set()
        while ready != set(self.argv):
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after 90 s: {set(self.argv) - ready}")
            if "web" not in ready:
                try:
                    if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                        ready.add("web")
                except httpx.HTTPError:
                    pass
            for name, worker in (("worker", self.default_name), ("whatsapp", self.whatsapp_name)):
                if name not in ready and celery_app.control.ping(destination=[worker], timeout=0.5):
                    ready.add(name)
            time.sleep(0.2)

    def restart_web(self, settings):
        """The web process again, with `settings` ({env name: value}) over the others; returns once it answers."""
        import httpx

        _terminate(self.procs["web"])
        _wait(self.procs["web"])
        self._spawn("web", {**self.env, **settings})
        deadline = time.monotonic() + 90
        while True:
            if self.procs["web"].poll() is not None:
                raise RuntimeError(f"web exited with {self.procs['web'].returncode}:\n{self.log('web')}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"web not ready after 90 s with {settings}")
            time.sleep(0.2)

    def log(self, name, last=40):
        text = (Path(self.work_dir) / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-last:])

    def stop(self):
        for proc in self.procs.values():
            _terminate(proc)
        for proc in self.procs.values():
            _wait(proc)


def _terminate(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _wait(proc):
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _group_cpu_seconds(pgid):
    """CPU seconds (user + system) of the live processes of a process group, from /proc."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, … utime 11, stime 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _machine_cpu_seconds():
    with open("/proc/stat") as f:
        jiffies = [int(x) for x in f.readline().split()[1:]]
    busy = jiffies[0] + jiffies[1] + jiffies[2] + jiffies[5] + jiffies[6]  # user nice system irq softirq
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(servers):
    own = os.times()
    return {**{name: _group_cpu_seconds(proc.pid) for name, proc in servers.procs.items()},
            "bench client": own.user + own.system, "machine": _machine_cpu_seconds()}


def cpu_line(before, after, messages, label):
    used = {name: after[name] - before[name] for name in before}
    known = sum(v for name, v in used.items() if name != "machine")
    used["other (Postgres, Redis, other users)"] = used["machine"] - known
    parts = [f"{name} {seconds * 1000 / messages:.1f}" for name, seconds in used.items() if name != "machine"]
    log(f"[{label}] CPU per message (ms): {'; '.join(parts)}; whole machine {used['machine'] * 1000 / messages:.1f}")
    return {name: round(seconds * 1000 / messages, 2) for name, seconds in used.items()}


def setup_tenant():
    """An active Enterprise tenant with an owner and an API key. Returns (tenant, raw key)."""
    from django.db import connection
    from django.utils import timezone

    from accounts.actions import create_api_key
    from accounts.models import Membership, User
    from billing.actions import start_trial
    from tenants.models import Domain, Plan, Tenant
    from tenants.plans import seed_plans
    from tenants.pool import create_and_migrate_schema

    seed_plans(Plan)
    create_and_migrate_schema(SCHEMA)
    connection.set_schema_to_public()
    tenant = Tenant.objects.create(name="Bench", slug="bench-send", schema_name=SCHEMA, status=Tenant.Status.ACTIVE,
                                   plan=Plan.objects.get(code="enterprise"), approved_at=timezone.now(),
                                   trial_ends_at=timezone.now() + timezone.timedelta(days=7),
                                   contact_phone="+14155550100")
    Domain.objects.create(tenant=tenant, domain=tenant.subdomain, is_primary=True)
    start_trial(tenant)
    user = User.objects.create_user(email="owner@bench-send.test", password=secrets.token_urlsafe(16))
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.OWNER)
    _, raw = create_api_key(user=user, tenant=tenant, name="bench")
    return tenant, raw


def link_session(client):
    def data(response, status):
        if response.status_code != status:
            raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} "
                               f"{response.text}")
        return response.json()["data"]

    def wait_for(status):
        deadline = time.monotonic() + 60
        while data(client.get(f"/api/v1/sessions/{SESSION}"), 200)["status"] != status:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the session never reached {status}")
            time.sleep(0.2)

    data(client.post("/api/v1/sessions", json={"name": SESSION}), 201)
    data(client.post(f"/api/v1/sessions/{SESSION}/start", json={"use_pairing_code": False}), 202)
    wait_for("qr")
    data(client.post(f"/api/v1/test-helpers/sessions/{SESSION}/scan", json={"phone": "+14155550123"}), 202)
    wait_for("connected")


def percentile(sorted_values, fraction):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


async def hammer(url, headers, requests, clients):
    """`requests` is a list of (method, path, json body or None); sends them from `clients` concurrent
    connections. Returns (wall seconds, latencies, the first response's JSON per status code)."""
    import httpx

    latencies, statuses, queue = [], {}, asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60.0, limits=limits) as client:
        async def worker():
            while not queue.empty():
                method, path, body = queue.get_nowait()
                started = time.perf_counter()
                response = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - started)
                statuses.setdefault(response.status_code, response.text[:300])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    return wall, latencies, statuses


def rate_line(what, count, wall, latencies):
    ms = sorted(x * 1000 for x in latencies)
    p50, p99 = statistics.median(ms), percentile(ms, 0.99)
    log(f"{what}: {count} requests in {wall:.2f} s = {count / wall:.0f}/s; latency p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms")
    return count / wall, p50, p99


def count_delivered(tenant):
    """(outgoing messages delivered or read, {status: count})."""
    from django.db.models import Count
    from django_tenants.utils import tenant_context

    from whatsapp.models import Message

    S = Message.Status
    with tenant_context(tenant):
        by_status = dict(Message.objects.filter(direction=Message.Direction.OUT).order_by()
                         .values_list("status").annotate(n=Count("id")))
    return by_status.get(S.DELIVERED, 0) + by_status.get(S.READ, 0), by_status


def send_phase(servers, headers, tenant, label, batch=1, resume=None):
    """POST MESSAGES messages from CLIENTS clients, one per POST /api/v1/messages (batch=1) or `batch` per POST
    /api/v1/messages/batch, and wait until all are delivered. Returns a dict: accepted messages/s, the p50/p99
    latency of a request, end-to-end messages/s from the first POST to the last delivery, CPU ms per message,
    receipts lost. With `resume` (the pipeline was paused while accepting): it is called after the last 202 and
    the end-to-end rate is the pipeline's alone, from then until the last delivery."""
    run_id = secrets.token_hex(3)
    bodies = [{"session": SESSION, "to": TO, "text": f"bench {run_id} #{i}"} for i in range(MESSAGES)]
    if batch == 1:
        what, sends = "POST /api/v1/messages", [("POST", "/api/v1/messages", body) for body in bodies]
    else:
        what = f"POST /api/v1/messages/batch ({batch} a request)"
        sends = [("POST", "/api/v1/messages/batch", {"messages": bodies[i:i + batch]})
                 for i in range(0, MESSAGES, batch)]
    before, _ = count_delivered(tenant)
    cpu_before = cpu_snapshot(servers)
    started = time.perf_counter()
    wall, latencies, statuses = asyncio.run(hammer(servers.url, headers, sends, CLIENTS))
    accepted_at = time.perf_counter()
    assert set(statuses) == {202}, statuses
    ms = sorted(x * 1000 for x in latencies)
    p50, p99 = statistics.median(ms), percentile(ms, 0.99)
    accept_rate = MESSAGES / wall
    log(f"[{label}] accept {what}: {MESSAGES} messages in {wall:.2f} s = {accept_rate:.0f} messages/s "
        f"({len(sends) / wall:.0f} requests/s); request latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if resume is not None:
        resume()
        started = time.perf_counter()
    deadline = time.monotonic() + TIMEOUT
    last_count, done = None, time.perf_counter()
    while True:
        delivered, by_status = count_delivered(tenant)
        if delivered != last_count:
            last_count, done = delivered, time.perf_counter()
        if delivered - before >= MESSAGES:
            break
        busy = by_status.get("queued", 0) + by_status.get("sending", 0)
        if not busy and time.perf_counter() - done > STALL_SECONDS:
            # Everything was sent but some delivered receipts never landed: reported, not waited for.
            log(f"[{label}] {MESSAGES - (delivered - before)} message(s) stay `sent`: their delivered receipt was "
                f"lost; {by_status}")
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {delivered - before} of {MESSAGES} delivered after {TIMEOUT:.0f} s: {by_status}")
        time.sleep(0.1)
    cpu = cpu_line(cpu_before, cpu_snapshot(servers), MESSAGES, label)
    lost = MESSAGES - (delivered - before)
    rate = (delivered - before) / (done - started)
    if resume is None:
        log(f"[{label}] end to end: {MESSAGES - lost} messages delivered {done - started:.2f} s after the first POST = "
            f"{rate:.0f} messages/s (the last one {done - accepted_at:.2f} s after the last 202)")
    else:
        log(f"[{label}] pipeline alone: {MESSAGES - lost} queued messages delivered in {done - started:.2f} s = "
            f"{rate:.0f} messages/s")
    return {"accept_per_s": round(accept_rate, 1), "request_p50_ms": round(p50, 2), "request_p99_ms": round(p99, 2),
            "end_to_end_per_s": round(rate, 1), "cpu_ms_per_message": cpu, "receipts_lost": lost}


def wait_until_idle(tenant):
    """Until no outgoing message is queued or being sent, and none waits for its delivered receipt unless the
    receipts stopped coming (a lost one is the phases' to report)."""
    deadline = time.monotonic() + TIMEOUT
    last, changed = None, time.monotonic()
    while True:
        _, by_status = count_delivered(tenant)
        unsent = by_status.get("queued", 0) + by_status.get("sending", 0)
        waiting = unsent + by_status.get("sent", 0)
        if not waiting or (not unsent and waiting == last and time.monotonic() - changed > STALL_SECONDS):
            return
        if waiting != last:
            last, changed = waiting, time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pipeline is still busy after {TIMEOUT:.0f} s: {by_status}")
        time.sleep(0.1)


def accept_alone(app, servers, headers, tenant, label):
    """send_phase while the session host does not consume the hosts' shared queue (where drain tasks go): the
    accept path with the machine to itself; then the pipeline alone drains what was queued."""
    from whatsapp.host.queues import SHARED_QUEUE

    app.control.cancel_consumer(SHARED_QUEUE, destination=[servers.whatsapp_name], reply=True, timeout=5)
    return send_phase(servers, headers, tenant, label, resume=lambda: app.control.add_consumer(
        SHARED_QUEUE, destination=[servers.whatsapp_name], reply=True, timeout=5))


def measure_variants(app, servers, headers, tenant):
    """{variant: [accept_alone's figures per round]}: each round restarts the web process once per VARIANTS
    entry (a different order each round, so drift on a shared machine does not favour one), warms it up with
    WARM_UP messages and measures the accept path alone."""
    names = list(VARIANTS)
    runs = {name: [] for name in names}
    for round_index in range(VARIANT_ROUNDS):
        turn = round_index % len(names)
        for name in names[turn:] + names[:turn]:
            servers.restart_web(VARIANTS[name])
            sends = [("POST", "/api/v1/messages", {"session": SESSION, "to": TO, "text": f"warm-up {i}"})
                     for i in range(WARM_UP)]
            _, _, statuses = asyncio.run(hammer(servers.url, headers, sends, CLIENTS))
            assert set(statuses) == {202}, statuses
            wait_until_idle(tenant)
            runs[name].append(accept_alone(app, servers, headers, tenant, f"{name}, round {round_index + 1}"))
    return runs


def variant_figures(runs):
    """The switches' figures (medians over the rounds) for the last line, and their readable line."""
    if not VARIANT_ROUNDS:
        return {}
    rate = {name: statistics.median(r["accept_per_s"] for r in each) for name, each in runs.items()}
    web_cpu = {name: statistics.median(r["cpu_ms_per_message"]["web"] for r in each) for name, each in runs.items()}
    rows_vs_orm, handler = rate["default"] / rate["orm"], rate["default"] / rate["stock handler"]
    listed = "; ".join(f"{name} " + ", ".join(str(round(r["accept_per_s"])) for r in each)
                       for name, each in runs.items())
    # The web process's CPU per message is the steadier figure on a shared machine: the rates also move with
    # whatever else runs there.
    orm_cpu, stock_cpu = web_cpu["orm"] / web_cpu["default"], web_cpu["stock handler"] / web_cpu["default"]
    throttled_cpu, throttled_ratio = web_cpu["throttled"] / web_cpu["default"], rate["default"] / rate["throttled"]
    encrypted, encrypted_cpu = rate["encrypted"] / rate["default"], web_cpu["encrypted"] / web_cpu["default"]
    log(f"speed path, accept alone, medians of {VARIANT_ROUNDS} rounds (a fresh web process each): core.rows "
        f"{rate['default']:.0f}/s vs ORM {rate['orm']:.0f}/s = {rows_vs_orm:.2f}x; config.http handler "
        f"{rate['default']:.0f}/s vs Django's stock handler {rate['stock handler']:.0f}/s = {handler:.2f}x; web CPU "
        f"per message (ms): {', '.join(f'{name} {ms:.1f}' for name, ms in web_cpu.items())} (ORM / rows "
        f"{orm_cpu:.2f}x, stock / config.http {stock_cpu:.2f}x); API throttles counting {rate['throttled']:.0f}/s vs "
        f"off {rate['default']:.0f}/s = {throttled_ratio:.2f}x, web CPU {throttled_cpu:.2f}x; runs (/s): {listed}")
    log(f"encryption at rest, accept alone, medians of {VARIANT_ROUNDS} rounds: encrypted {rate['encrypted']:.0f}/s "
        f"vs plain {rate['default']:.0f}/s = {encrypted:.2f}x; web CPU per message {web_cpu['encrypted']:.2f} vs "
        f"{web_cpu['default']:.2f} ms = {encrypted_cpu:.2f}x")
    return {"variant_rounds": VARIANT_ROUNDS,
            "accept_rows_per_s": round(rate["default"], 1), "accept_orm_per_s": round(rate["orm"], 1),
            "rows_vs_orm_ratio": round(rows_vs_orm, 3),
            "accept_custom_handler_per_s": round(rate["default"], 1),
            "accept_stock_handler_per_s": round(rate["stock handler"], 1), "handler_ratio": round(handler, 3),
            "web_cpu_ms_per_message": {name: round(ms, 2) for name, ms in web_cpu.items()},
            "orm_vs_rows_web_cpu_ratio": round(orm_cpu, 3), "stock_vs_custom_web_cpu_ratio": round(stock_cpu, 3),
            "accept_throttled_per_s": round(rate["throttled"], 1), "unthrottled_vs_throttled_ratio":
                round(throttled_ratio, 3), "throttled_vs_unthrottled_web_cpu_ratio": round(throttled_cpu, 3),
            "accept_encrypted_per_s": round(rate["encrypted"], 1), "encrypted_vs_plain_ratio": round(encrypted, 3),
            "encrypted_vs_plain_web_cpu_ratio": round(encrypted_cpu, 3),
            "accept_runs_per_s": {name: [r["accept_per_s"] for r in each] for name, each in runs.items()}}


def measure_analytics(servers, headers, tenant):
    """The batch phase with the analytics counting trigger off and on, alternating over ANALYTICS_ROUNDS rounds
    (medians): the figures for the last line. The trigger is enabled again at the end, whatever happens."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from analytics import rollups

    def counting(enabled):
        with schema_context(SCHEMA):
            rollups.set_counting(enabled)
        connection.set_schema_to_public()

    if not ANALYTICS_ROUNDS:
        return {}
    def fold():
        """The counter rows the trigger appended since the last fold (none with it off: the switch works), folded
        into the rollups: beat's job in production, outside the timing here."""
        wait_until_idle(tenant)
        with schema_context(SCHEMA), connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM analytics_messagecounter")
            counted = cursor.fetchone()[0]
            rollups.fold()
        connection.set_schema_to_public()
        return counted

    runs, counted = {"off": [], "on": []}, {"off": [], "on": []}
    try:
        # A warm-up batch phase (not measured), so the first round's side does not pay for cold processes.
        counting(True)
        send_phase(servers, headers, tenant, "analytics warm-up", batch=BATCH)
        fold()
        for round_index in range(ANALYTICS_ROUNDS):
            for state in (("off", "on") if round_index % 2 == 0 else ("on", "off")):
                label = f"analytics {state}, round {round_index + 1}"
                counting(state == "on")
                runs[state].append(send_phase(servers, headers, tenant, label, batch=BATCH))
                counted[state].append(fold())
                log(f"[{label}] {counted[state][-1]} counter rows appended by the trigger")
    finally:
        wait_until_idle(tenant)
        counting(True)
    rate = {state: statistics.median(r["end_to_end_per_s"] for r in each) for state, each in runs.items()}
    cost = (rate["off"] / rate["on"] - 1) * 100
    listed = "; ".join(f"{state} " + ", ".join(str(round(r["end_to_end_per_s"])) for r in each)
                       for state, each in runs.items())
    log(f"analytics counting trigger, batch phase end to end, medians of {ANALYTICS_ROUNDS} rounds: off "
        f"{rate['off']:.0f}/s, on {rate['on']:.0f}/s: pipeline cost {cost:+.1f}% (target within 5%); runs (/s): "
        f"{listed}")
    return {"analytics_rounds": ANALYTICS_ROUNDS, "pipeline_analytics_off_per_s": round(rate["off"], 1),
            "pipeline_analytics_on_per_s": round(rate["on"], 1), "pipeline_cost_pct": round(cost, 1),
            "pipeline_analytics_runs_per_s": {state: [r["end_to_end_per_s"] for r in each]
                                              for state, each in runs.items()},
            "pipeline_analytics_counter_rows": counted,
            "pipeline_analytics_receipts_lost": sum(r["receipts_lost"] for each in runs.values() for r in each)}


def run(dbname):
    import httpx
    import redis
    from cryptography.fernet import Fernet
    from django.db import connection

    from config.celery import app

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # this bench's private database: a clean broker
    app.conf.broker_url = os.environ["REDIS_URL"]
    tenant, raw_key = setup_tenant()
    work_dir = tempfile.mkdtemp(prefix="send-bench-")
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,.localhost",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_CONN_MAX_AGE": "60",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "WHATSAPP_PROVIDER": "simulator",
        "WHATSAPP_STORE_DIR": str(Path(work_dir) / "store"),
        "WHATSAPP_PACING_ENABLED": "false",
        "WHATSAPP_RATE_LIMIT_PER_COMPANY": "-1",
        # One key sends thousands of requests a second here: the API throttles would refuse most (see "throttled").
        "API_THROTTLE_KEY_RATE": "off", "API_THROTTLE_USER_RATE": "off",
        "WHATSAPP_SIMULATOR_DELIVERED_SECONDS": "0.05",
        "WHATSAPP_SIMULATOR_READ_SECONDS": "never",
        "WHATSAPP_ENCRYPTION_KEY": Fernet.generate_key().decode(),  # the "encrypted" variant switches bodies on
    }
    servers = Servers(work_dir, env)
    headers = {"Authorization": f"Bearer {raw_key}"}
    log(f"{os.cpu_count()} CPUs; {MESSAGES} messages, {CLIENTS} concurrent clients; servers' logs in {work_dir}")
    try:
        servers.start(app)
        with httpx.Client(base_url=servers.url, headers=headers, timeout=30) as client:
            link_session(client)
            warm = client.post("/api/v1/messages", json={"session": SESSION, "to": TO, "text": "warm-up"})
            assert warm.status_code == 202, warm.text
            probe_id = warm.json()["data"]["id"]
        log("session linked; one warm-up message sent")
        figures = {"bench": "send_pipeline", "messages": MESSAGES, "clients": CLIENTS, "batch_size": BATCH,
                   "cpus": os.cpu_count(), "only": ONLY or None}
        if not ONLY:
            # Baselines first, while the pipeline is idle; the same clients, the same server.
            health = asyncio.run(hammer(servers.url, headers, [("GET", "/health", None)] * BASELINE_REQUESTS,
                                        CLIENTS))
            assert set(health[2]) == {200}, health[2]
            health_rate, _, _ = rate_line("baseline GET /health", BASELINE_REQUESTS, health[0], health[1])
            read = asyncio.run(hammer(servers.url, headers,
                                      [("GET", f"/api/v1/messages/{probe_id}", None)] * BASELINE_REQUESTS,
                                      CLIENTS))
            assert set(read[2]) == {200}, read[2]
            read_rate, _, _ = rate_line("baseline GET /api/v1/messages/{id} (API key)", BASELINE_REQUESTS,
                                        read[0], read[1])

            # One message per request, accepted and sent at once as in production.
            single = send_phase(servers, headers, tenant, "single")
            # Which side limits: the accept path alone, then the pipeline alone.
            alone = accept_alone(app, servers, headers, tenant, "apart")
            # Batches of BATCH: what a bulk sender does, and the pipeline's throughput end to end.
            batched = send_phase(servers, headers, tenant, "batch", batch=BATCH)
            log(f"accept path alone / GET /health = {alone['accept_per_s'] / health_rate:.0%} (target >= 50%), with "
                f"the pipeline running {single['accept_per_s'] / health_rate:.0%}; single accept / authenticated read "
                f"= "
                f"{single['accept_per_s'] / read_rate:.0%}; end to end: batches {batched['end_to_end_per_s']:.0f}/s "
                f"(target >= 500/s), single requests {single['end_to_end_per_s']:.0f}/s; pipeline alone "
                f"{alone['end_to_end_per_s']:.0f}/s")
            # The speed path's switches, last: each restarts the web process.
            switches = variant_figures(measure_variants(app, servers, headers, tenant))
            figures.update({
                "baseline_health_per_s": round(health_rate, 1), "baseline_api_read_per_s": round(read_rate, 1),
                "accept_alone_vs_health": round(alone["accept_per_s"] / health_rate, 3),
                "single_accept_vs_health": round(single["accept_per_s"] / health_rate, 3),
                "end_to_end_per_s": batched["end_to_end_per_s"], "single": single, "apart": alone, "batch": batched,
                "receipts_lost": single["receipts_lost"] + batched["receipts_lost"] + alone["receipts_lost"],
                **switches})
        # The analytics counting trigger off vs on, through the whole pipeline (issue 13).
        figures.update(measure_analytics(servers, headers, tenant))
    except BaseException:
        for name in servers.procs:
            log(f"----- {name} -----\n{servers.log(name)}")
        raise
    finally:
        servers.stop()
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    return figures


if __name__ == "__main__":
    main()
