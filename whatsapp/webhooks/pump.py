"""Webhook deliveries at the pipeline's pace: claimed in batches, POSTed concurrently over pooled keep-alive
connections (one aiohttp session per endpoint, kept by the worker process from one pump to the next), recorded in
batches.

aiohttp, not httpx: on the 2-core development machine under load, 10 endpoints x 16 concurrent POSTs to a local
receiver ran at 767/s with aiohttp, 67/s with httpx's AsyncClient and 283/s with one sync httpx client in a loop
(same minute; httpx's async pool is the bottleneck). The single attempts (delivery.attempt: replays, the sweeper)
keep httpx.

A commit that stores deliveries wakes the schema's pump (wake: one task per burst, as a Redis flag says one is on
its way or running; the pump clears it when it finds nothing due, then looks once more). The pump (the
`pump_webhooks` task, in a `worker`) loops:

  claim   due deliveries of enabled endpoints, per endpoint at most its free slots (WEBHOOK_CONCURRENCY_PER_ENDPOINT
          minus those in flight), each held for CLAIM_SECONDS (a little over WEBHOOK_TIMEOUT_SECONDS, so a pump
          killed mid-flight leaves rows the sweeper retries within a minute)
  post    on the process's event-loop thread, concurrently; the database work stays on the task's thread
  record  what came back, one statement per round (delivery.outcome decides: succeeded, retry later, dead, 410)

A slow or dead endpoint holds at most its own slots for at most the timeout: the others' deliveries are claimed
and sent meanwhile (isolation). One that does not answer backs off (note_health), then is probed one delivery at
a time. Deliveries of one endpoint may arrive out of order (as with any retry; receivers order by the payload's
timestamp), unless the endpoint is `ordered`: then one at a time, oldest first, a failing one holding the rest.
The beat sweeper (tasks.deliver_due_webhooks) wakes the pump of every schema with due deliveries.
"""
import asyncio
import atexit
import functools
import json
import logging
import os
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import certifi
from celery import shared_task
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_tenants.utils import schema_context
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from core import rows
from core.net import TargetError, resolve_target
from core.redis import client as redis_client

from . import delivery as wire
from .models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)
S = WebhookDelivery.Status

# A wake flag whose task was lost (a worker SIGKILLed mid-pump) lets the next commit through after this; a running
# pump keeps its flag alive every WAKE_RENEW_SECONDS. (60 s unrenewed before: after a worker kill, new events waited
# for the beat sweeper for up to a minute: the chaos bench's webhook lag p99 of 32 s.)
WAKE_TTL_SECONDS = 15
WAKE_RENEW_SECONDS = 3
CLAIM_MAX = 500  # deliveries claimed per round, across endpoints
LINGER_SECONDS = 0.05  # an idle pump looks again this long before it ends (a steady trickle needs no new task)
RUN_SECONDS = 120  # a pump hands over to a new task after this long, so one task never holds a worker for ever
ROUND_SECONDS = 0.02  # a round of the loop: one claim, one record, at most this often
IDLE_WAIT_SECONDS = 0.2  # with every slot busy and nothing finishing (slow endpoints), look again after this
SESSION_IDLE_SECONDS = 30  # a pooled session unused this long is closed
# An idle keep-alive connection is dropped after this, before the common server idle timeouts (Node's 5 s) can
# close it under a request being sent.
KEEPALIVE_SECONDS = 4
# An endpoint that did not answer (timed out, refused the connection) is left alone for 2, 4, 8 … up to this many
# seconds after each failed round, then probed with one delivery at a time until one succeeds: a dead endpoint
# costs one attempt per backoff, not its full concurrency every timeout, and its deliveries wait without using
# up their retries.
BACKOFF_MAX_SECONDS = 60


def concurrency_per_endpoint():
    return max(1, int(getattr(settings, "WEBHOOK_CONCURRENCY_PER_ENDPOINT", 16)))


def claim_seconds():
    return wire.claim_seconds()


# --- waking the pump ---------------------------------------------------------------------------------------------


def _wake_key(schema_name):
    return f"sb:webhooks:{connection.settings_dict['NAME']}:{schema_name}"


def wake(schema_name, *, now=None):
    """Have the schema's due deliveries sent: one pump task on its way per schema. Redis or the broker being down
    loses nothing: the rows are committed and the sweeper sends them. `now` (tests) is the pump's clock."""
    try:
        if not redis_client().set(_wake_key(schema_name), 1, nx=True, ex=WAKE_TTL_SECONDS):
            return False
        pump_webhooks.delay(schema_name, *([now.isoformat()] if now else []))
    except (RedisError, OperationalError):
        log.warning("could not wake the webhook pump of %s; the sweeper will", schema_name, exc_info=True)
        return False
    return True


def _renew_wake(schema_name):
    """The running pump's flag lives on (never made anew: a cleared flag stays cleared)."""
    try:
        redis_client().expire(_wake_key(schema_name), WAKE_TTL_SECONDS)
    except RedisError:
        log.warning("could not renew the webhook wake flag of %s", schema_name, exc_info=True)


def _clear_wake(schema_name):
    try:
        redis_client().delete(_wake_key(schema_name))
    except RedisError:
        log.warning("could not clear the webhook wake flag of %s", schema_name, exc_info=True)


@shared_task(name="whatsapp.webhooks.tasks.pump_webhooks", ignore_result=True)
def pump_webhooks(schema_name, now=None):
    """Send the schema's due deliveries, concurrently, until none is due (see the module's docstring). `now`
    (ISO, tests) fixes the clock of the schedule."""
    with schema_context(schema_name):
        pump(schema_name, now=parse_datetime(now) if now else None)


# --- the event loop that does the HTTP ---------------------------------------------------------------------------


class _LoopThread:
    """One asyncio loop per process on a daemon thread, started on first use (after any fork)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loop = None
        self._pid = None

    def loop(self):
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="webhook-pump-loop", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def submit(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop())


_loop = _LoopThread()


@dataclass
class _Target:
    """An endpoint for one run: its checked addresses, secret and pooled session (or why it cannot be sent to)."""
    endpoint: WebhookEndpoint
    addresses: list
    secret: str | None
    problem: str = ""
    session: aiohttp.ClientSession | None = None


@functools.lru_cache(maxsize=4)
def _tls_context(cafile):
    """The certificates httpx trusts for single attempts (delivery._post): SSL_CERT_FILE when set, else certifi's.
    Made once per process: loading the bundle costs ~15 ms of CPU, which per endpoint and pump was the largest
    cost of a short burst (profiled)."""
    return ssl.create_default_context(cafile=cafile)


async def _new_session(limit, timeout):
    tls = _tls_context(os.environ.get("SSL_CERT_FILE") or certifi.where())
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, use_dns_cache=False, ssl=tls,
                                       keepalive_timeout=KEEPALIVE_SECONDS),
        timeout=aiohttp.ClientTimeout(total=timeout), auto_decompress=False)


class _Sessions:
    """The process's pooled sessions, kept from one pump to the next (a trickle of events reuses its keep-alive
    connections instead of connecting, and for https handshaking, per pump). Keyed by schema, endpoint, URL,
    checked addresses and the settings a session is made with, so a changed endpoint or a new DNS answer gets a
    new session; one unused for SESSION_IDLE_SECONDS is closed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sessions = {}  # key -> [session, last used (monotonic)]

    def get(self, key):
        limit, timeout = concurrency_per_endpoint(), settings.WEBHOOK_TIMEOUT_SECONDS
        key = (os.getpid(), *key, limit, timeout)  # a forked child has a loop (and sessions) of its own
        with self._lock:
            found = self._sessions.get(key)
            if found is None or found[0].closed:
                found = self._sessions[key] = [_loop.submit(_new_session(limit, timeout)).result(), 0.0]
            found[1] = time.monotonic()
            return found[0]

    def close_idle(self, idle_seconds=None):
        idle_seconds = SESSION_IDLE_SECONDS if idle_seconds is None else idle_seconds
        cutoff = time.monotonic() - idle_seconds
        closing = []
        with self._lock:
            stale = [key for key, (_, used) in self._sessions.items() if used <= cutoff or key[0] != os.getpid()]
            for key in stale:
                session = self._sessions.pop(key)[0]
                if key[0] == os.getpid():
                    closing.append(_loop.submit(session.close()))
        return closing

    def close_all(self):
        """At the process's exit: closed, not left to the garbage collector's warnings."""
        for closed in self.close_idle(idle_seconds=-1):
            try:
                closed.result(timeout=1)
            except Exception:  # exiting anyway
                pass


_sessions = _Sessions()
atexit.register(_sessions.close_all)


async def _post(session, url, body, headers, addresses):
    """wire._post on a pooled session: (status code or None, excerpt, error, duration ms). Connects only to the
    checked `addresses`, tried in order while the connection is refused; no redirects."""
    started = time.monotonic()
    code, excerpt, error = None, "", ""
    try:
        for index, ip in enumerate(addresses):
            target, host_header, extensions = wire._pinned(url, ip)
            sni = {"server_hostname": extensions["sni_hostname"]} if "sni_hostname" in extensions else {}
            try:
                async with session.post(target, data=body, headers={**headers, "host": host_header},
                                        allow_redirects=False, **sni) as response:
                    code = response.status
                    excerpt = (await response.content.read(wire.RESPONSE_EXCERPT_CHARS * 4)).decode(
                        "utf-8", "replace")[:wire.RESPONSE_EXCERPT_CHARS]
                break
            except aiohttp.ClientConnectorError:
                if index == len(addresses) - 1:
                    raise
        error = wire.late_or_failed(code, time.monotonic() - started)
    except asyncio.TimeoutError:
        code, error = None, f"Timed out after {settings.WEBHOOK_TIMEOUT_SECONDS:g} s"
    except aiohttp.ClientConnectorError as exc:  # named as a single attempt (httpx) names it
        code, error = None, f"ConnectError: {exc}"
    except aiohttp.ClientError as exc:
        code, error = None, f"{type(exc).__name__}: {exc}"
    return code, excerpt, error[:wire.ERROR_CHARS], int((time.monotonic() - started) * 1000)


# --- the pump ----------------------------------------------------------------------------------------------------


def claim(busy, *, now=None, limit=CLAIM_MAX):
    """In the current schema: due deliveries of enabled endpoints that are not backing off, oldest first per
    endpoint and at most its free slots (`busy`: endpoint id -> in flight; an endpoint being probed after a
    failed round has one slot), held for claim_seconds(). One statement; concurrent pumps skip each other's rows.
    Returns [(delivery, lease)] with the endpoint loaded."""
    now = now or timezone.now()
    lease = now + timedelta(seconds=claim_seconds())
    slots = concurrency_per_endpoint()
    table, endpoints = rows.table(WebhookDelivery), rows.table(WebhookEndpoint)
    ids, counts = list(busy), [busy[i] for i in busy]
    with transaction.atomic():
        with connection.cursor() as cursor:  # a lost claim only means the delivery goes again (see record)
            cursor.execute("SET LOCAL synchronous_commit = off")
        # Unordered endpoints: their due deliveries, skipping rows another pump holds. Ordered ones: only their
        # head (oldest delivery still to go), and only when it is due: while it is in flight its claim makes it
        # not due, after a failure its retry time does, so the ones after it wait. The outer condition is checked
        # again on a row another pump claimed meanwhile (no SKIP LOCKED there: skipping the head would break the
        # order).
        found = rows.run(WebhookDelivery, (
            f"UPDATE {table} SET next_attempt_at = %(lease)s WHERE next_attempt_at <= %(now)s AND id IN ("
            f"SELECT d.id FROM {endpoints} e LEFT JOIN unnest(%(ids)s::bigint[], %(counts)s::int[]) "
            f"AS b(endpoint_id, n) ON b.endpoint_id = e.id CROSS JOIN LATERAL (SELECT id FROM {table} d "
            f"WHERE d.endpoint_id = e.id AND d.status IN (%(pending)s, %(failed)s) AND d.next_attempt_at <= %(now)s "
            f"ORDER BY d.next_attempt_at, d.id LIMIT GREATEST(CASE WHEN e.failure_streak > 0 THEN 1 "
            f"ELSE %(slots)s END - COALESCE(b.n, 0), 0) FOR UPDATE SKIP LOCKED) d "
            f"WHERE e.enabled AND NOT e.ordered AND (e.backoff_until IS NULL OR e.backoff_until <= %(now)s) "
            f"UNION ALL "
            f"SELECT h.id FROM {endpoints} e CROSS JOIN LATERAL (SELECT id, next_attempt_at FROM {table} d "
            f"WHERE d.endpoint_id = e.id AND d.status IN (%(pending)s, %(failed)s) ORDER BY d.created_at, d.id "
            f"LIMIT 1) h WHERE e.enabled AND e.ordered AND (e.backoff_until IS NULL OR e.backoff_until <= %(now)s) "
            f"AND h.next_attempt_at <= %(now)s LIMIT %(limit)s) "
            f"RETURNING {rows.columns(WebhookDelivery, table)}"),
            {"lease": lease, "ids": ids, "counts": counts, "pending": S.PENDING, "failed": S.FAILED, "now": now,
             "slots": slots, "limit": limit})
    found.sort(key=lambda d: (d.created_at, d.pk))
    return [(delivery, lease) for delivery in found]


def count_due(*, now=None):
    """In the current schema: how many deliveries the pump would send now (enabled endpoints, not backing off)."""
    now = now or timezone.now()
    table, endpoints = rows.table(WebhookDelivery), rows.table(WebhookEndpoint)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} d JOIN {endpoints} e ON e.id = d.endpoint_id "
                       f"WHERE d.status IN (%s, %s) AND d.next_attempt_at <= %s AND e.enabled "
                       f"AND (e.backoff_until IS NULL OR e.backoff_until <= %s)", [S.PENDING, S.FAILED, now, now])
        return cursor.fetchone()[0]


def pump(schema_name, *, now=None, run_seconds=RUN_SECONDS):
    """In the schema: claim, post and record due deliveries until none is due and none is in flight. Returns how
    many attempts were made. `now` (tests) fixes the clock of the schedule. Statements are what costs here (a
    commit is milliseconds on a busy database): the loop claims and records at most every ROUND_SECONDS, each
    time for everything that is free or finished, and hands each claim to the event loop in one call."""
    targets, in_flight, busy = {}, {}, {}
    results = queue.SimpleQueue()  # (delivery id, outcome of the POST), put by the event loop's thread
    attempts, cleared, lingered = 0, False, 0.0
    deadline = time.monotonic() + run_seconds
    renew_at = time.monotonic() + WAKE_RENEW_SECONDS
    _sessions.close_idle()
    try:
        while True:
            if not cleared and time.monotonic() >= renew_at:
                _renew_wake(schema_name)
                renew_at = time.monotonic() + WAKE_RENEW_SECONDS
            claimed = claim(busy, now=now) if time.monotonic() < deadline else []
            jobs = []
            for delivery, lease in claimed:
                target = targets.get(delivery.endpoint_id) or _target(targets, delivery.endpoint_id)
                in_flight[delivery.pk] = (delivery, lease)
                busy[delivery.endpoint_id] = busy.get(delivery.endpoint_id, 0) + 1
                jobs.append((delivery.pk, _attempt(target, delivery)))
            if jobs:
                _loop.submit(_run_all(jobs, results))
                cleared, lingered = False, 0.0
            elif not in_flight:
                if cleared or time.monotonic() >= deadline:
                    break
                if lingered < LINGER_SECONDS:
                    time.sleep(0.01)
                    lingered += 0.01
                    continue
                _clear_wake(schema_name)
                cleared = True
                continue
            round_ends = time.monotonic() + ROUND_SECONDS
            try:
                done = [results.get(timeout=IDLE_WAIT_SECONDS)]
            except queue.Empty:
                done = []
            # Let the round fill: what finishes meanwhile is recorded together, freed slots claimed together.
            time.sleep(max(0.0, round_ends - time.monotonic()))
            while True:
                try:
                    done.append(results.get_nowait())
                except queue.Empty:
                    break
            finished = []
            for delivery_id, result in done:
                delivery, lease = in_flight.pop(delivery_id)
                busy[delivery.endpoint_id] -= 1
                finished.append((delivery, lease, result))
            record(finished, now=now)
            attempts += len(finished)
    finally:
        if in_flight:  # cut short (an error): those rows are retried when their claim runs out
            log.warning("webhook pump of %s stopped with %d deliveries in flight", schema_name, len(in_flight))
        if not cleared:
            _clear_wake(schema_name)
    if time.monotonic() >= deadline:
        wake(schema_name)  # more to do: a new task, so that other work gets the worker in between
    return attempts


async def _run_all(jobs, results):
    async def run(delivery_id, attempt):
        try:
            result = await attempt
        except Exception as exc:  # a bug must not lose the delivery's slot: it is recorded as a failed attempt
            log.exception("webhook delivery %s failed unexpectedly", delivery_id)
            result = (None, "", f"{type(exc).__name__}: {exc}"[:wire.ERROR_CHARS], 0)
        results.put((delivery_id, result))

    for delivery_id, attempt in jobs:
        asyncio.ensure_future(run(delivery_id, attempt))


def _target(targets, endpoint_id):
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    try:
        addresses, secret, problem = resolve_target(endpoint.url), wire.decrypt_secret(endpoint.secret_encrypted), ""
    except (TargetError, wire.SecretUnreadable) as exc:
        addresses, secret, problem = [], None, exc.message
    target = _Target(endpoint, addresses, secret, problem)
    if not problem:
        target.session = _sessions.get((connection.schema_name, endpoint.pk, endpoint.url, tuple(addresses)))
    targets[endpoint_id] = target
    return target


async def _fail_now(problem):
    return None, "", problem, 0


def _attempt(target, delivery):
    """The coroutine that POSTs the delivery (signed here, with the wall clock: see delivery.attempt)."""
    delivery.endpoint = target.endpoint
    if target.problem:
        return _fail_now(target.problem)
    body = json.dumps(delivery.payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    headers = wire.signed_headers(target.secret, delivery.webhook_id, body, timezone.now())
    return _post(target.session, target.endpoint.url, body.encode(), headers, target.addresses)


_encoder = DjangoJSONEncoder()  # the attempt log reads as delivery.attempt writes it


def _exact(value):
    """Timestamps to the microsecond (the lease is compared for equality), unlike DjangoJSONEncoder."""
    return value.isoformat()


def record(finished, *, now=None):
    """[(delivery, lease, (code, excerpt, error, duration))] → each delivery's attempt and what follows, in one
    statement (a row whose claim ran out and was taken again is left to its new holder); endpoints that answered
    410 are disabled."""
    if not finished:
        return
    now = wire.current_time(now)
    updates, disabled = [], set()
    for delivery, lease, (code, excerpt, error, duration) in finished:
        result = wire.outcome(delivery.attempts + 1, code, error, now)
        entry = {"at": _encoder.default(now), "status_code": code, "duration_ms": duration, "error": result.error,
                 "response": excerpt}
        updates.append({"id": delivery.pk, "lease": lease, "code": code, "error": result.error,
                        "duration": duration, "entry": [entry], "status": result.status,
                        "next_at": result.next_attempt_at, "succeeded_at": result.succeeded_at})
        if result.disable:
            disabled.add(delivery.endpoint_id)
    answered = {delivery.endpoint_id for delivery, _, (code, *_) in finished if code is not None}
    unanswered = {delivery.endpoint_id for delivery, _, (code, *_) in finished if code is None} - answered
    with transaction.atomic(), connection.cursor() as cursor:
        # A record lost to a database crash only means the delivery goes again: receivers dedupe by webhook-id
        # (at-least-once, as always), so the commit need not wait for the disk.
        cursor.execute("SET LOCAL synchronous_commit = off")
        # One JSON document, not a parameter per value: the same statement text every round, encoded in C.
        cursor.execute(
            f"UPDATE {rows.table(WebhookDelivery)} AS d SET attempts = d.attempts + 1, last_status_code = v.code, "
            f"last_error = v.error, last_duration_ms = v.duration, attempt_log = d.attempt_log || v.entry, "
            f"status = v.status, next_attempt_at = v.next_at, succeeded_at = v.succeeded_at "
            f"FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, lease timestamptz, code int, error text, "
            f"duration int, entry jsonb, status text, next_at timestamptz, succeeded_at timestamptz) "
            f"WHERE d.id = v.id AND d.next_attempt_at = v.lease", [json.dumps(updates, default=_exact)])
        for endpoint_id in disabled:
            wire.disable_gone(endpoint_id, now)
        note_health(answered, unanswered, now)


def note_health(answered, unanswered, now):
    """Endpoints that answered (whatever the status) are healthy again; those that did not (timeouts, refused
    connections, no usable address) back off: 2 ** streak seconds, at most BACKOFF_MAX_SECONDS, the streak
    counting backoffs (not attempts)."""
    endpoints = rows.table(WebhookEndpoint)
    with connection.cursor() as cursor:
        if answered:
            cursor.execute(f"UPDATE {endpoints} SET failure_streak = 0, backoff_until = NULL "
                           f"WHERE id = ANY(%s) AND failure_streak > 0", [list(answered)])
        if unanswered:  # (attempts made before the backoff began and failing after it do not extend it)
            cursor.execute(f"UPDATE {endpoints} SET failure_streak = failure_streak + 1, backoff_until = %(now)s "
                           f"+ make_interval(secs => LEAST(power(2, failure_streak + 1), %(most)s)) "
                           f"WHERE id = ANY(%(ids)s) AND (backoff_until IS NULL OR backoff_until <= %(now)s)",
                           {"now": now, "most": BACKOFF_MAX_SECONDS, "ids": list(unanswered)})
