"""The webhook pump (whatsapp.webhooks.pump): a burst of events is sent concurrently over pooled connections, a dead
endpoint does not slow a live one, a pump that dies mid-flight leaves deliveries the sweeper retries within a minute,
and what the pump records is what a single attempt records (delivery.attempt).

alice owns Acme. A real receiver (webhook_support.Receiver) verifies every request's signature.
"""
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_tenants.utils import tenant_context

from whatsapp.models import WebhookDelivery
from whatsapp.tests.webhook_support import Receiver
from whatsapp.webhooks import actions, pump
from whatsapp.webhooks import delivery as wire
from whatsapp.webhooks.tasks import deliver_due_webhooks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def silent():
    """An endpoint that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"
    listener.close()


def endpoint(tenant, url, receiver=None):
    with tenant_context(tenant):
        created, secret = actions.create_endpoint(tenant, acting_user=None, url=url, events=["message.sent"])
    if receiver is not None:
        receiver.secret = secret
    return created


def emit_many(tenant, count):
    """Store `count` message.sent events without the on-commit wake (the test runs the pump itself)."""
    wake, pump.wake = pump.wake, lambda schema_name: False
    try:
        with tenant_context(tenant):
            return actions.emit_events("message.sent", [{"id": i, "status": "sent"} for i in range(count)])
    finally:
        pump.wake = wake


def statuses(tenant, endpoint_id):
    with tenant_context(tenant):
        return sorted(WebhookDelivery.objects.filter(endpoint_id=endpoint_id).values_list("status", flat=True))


def test_a_burst_is_sent_concurrently_and_recorded_like_single_attempts(named, receiver, settings):
    settings.WEBHOOK_CONCURRENCY_PER_ENDPOINT = 16
    receiver.delay = 0.2
    live = endpoint(named.acme, receiver.url, receiver)
    emit_many(named.acme, 32)
    started = time.monotonic()
    with tenant_context(named.acme):
        assert pump.pump(named.acme.schema_name) == 32
    took = time.monotonic() - started
    assert len(receiver.delivered) == 32
    assert took < 32 * 0.2 / 2, f"{took:.2f} s: not concurrent"  # one at a time would take 6.4 s
    with tenant_context(named.acme):
        done = list(WebhookDelivery.objects.filter(endpoint=live))
    assert {d.status for d in done} == {"succeeded"} and all(d.attempts == 1 and d.succeeded_at for d in done)
    assert all(len(d.attempt_log) == 1 and d.attempt_log[0]["status_code"] == 200 for d in done)
    assert len({h["webhook-id"] for h, _ in receiver.delivered}) == 32

    # A failing answer is recorded as delivery.attempt records it: the retry schedule, then 410 disables.
    receiver.delay, receiver.statuses = 0, [500]
    [failing] = emit_many(named.acme, 1)
    with tenant_context(named.acme):
        pump.pump(named.acme.schema_name)
        failed = WebhookDelivery.objects.get(pk=failing.pk)
    assert failed.status == "failed" and failed.last_status_code == 500 and failed.last_error == "HTTP 500"
    attempted_at = parse_datetime(failed.attempt_log[0]["at"])
    assert timedelta(seconds=4) < failed.next_attempt_at - attempted_at < timedelta(seconds=6)
    receiver.statuses = [410]
    with tenant_context(named.acme):
        WebhookDelivery.objects.filter(pk=failing.pk).update(next_attempt_at=timezone.now())
        pump.pump(named.acme.schema_name)
        gone = WebhookDelivery.objects.select_related("endpoint").get(pk=failing.pk)
    assert gone.status == "dead" and not gone.endpoint.enabled and "410" in gone.endpoint.disabled_reason


def test_a_dead_endpoint_does_not_slow_a_live_one(named, silent, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 6
    settings.WEBHOOK_CONCURRENCY_PER_ENDPOINT = 4
    receiver = Receiver()
    try:
        live = endpoint(named.acme, receiver.url, receiver)
        dead = endpoint(named.acme, silent)
        emit_many(named.acme, 40)  # 40 for each endpoint: the dead one's fill its 4 slots for 6 s each
        arrived = []
        original = pump.record

        def record(finished, now=None):
            original(finished, now=now)
            if len(receiver.delivered) == 40 and not arrived:
                arrived.append(time.monotonic())

        started = time.monotonic()
        with tenant_context(named.acme):
            pump.record = record
            try:
                pump.pump(named.acme.schema_name, run_seconds=7)
            finally:
                pump.record = original
        live_took = arrived[0] - started
        assert statuses(named.acme, live.pk) == ["succeeded"] * 40
        # The live endpoint's 40 went while the dead one's first four were still waiting for their timeout.
        assert live_took < settings.WEBHOOK_TIMEOUT_SECONDS, f"live endpoint done after {live_took:.2f} s"
        dead_states = statuses(named.acme, dead.pk)
        assert dead_states.count("failed") >= 4 and "succeeded" not in dead_states
        with tenant_context(named.acme):
            timed_out = WebhookDelivery.objects.filter(endpoint=dead, status="failed").first()
        assert timed_out.last_error.startswith("Timed out")
    finally:
        receiver.close()


def test_deliveries_of_a_pump_that_died_mid_flight_are_retried_within_a_minute(named, receiver):
    live = endpoint(named.acme, receiver.url, receiver)
    emit_many(named.acme, 3)
    claimed_at = timezone.now()
    with tenant_context(named.acme):
        held = pump.claim({}, now=claimed_at)  # claimed, then the worker was SIGKILLed: never attempted
    assert len(held) == 3 and not receiver.received
    retry_at = claimed_at + timedelta(seconds=wire.claim_seconds())
    # The sweeper (beat, every 10 s) leaves them alone while the claim holds, then sends them.
    assert deliver_due_webhooks(now=retry_at - timedelta(seconds=1)) == 0
    assert deliver_due_webhooks(now=retry_at + timedelta(milliseconds=1)) == 3
    assert statuses(named.acme, live.pk) == ["succeeded"] * 3 and len(receiver.delivered) == 3
    assert wire.claim_seconds() + 10 < 60


def test_a_commit_wakes_one_pump_for_the_burst(named, receiver, django_capture_on_commit_callbacks, monkeypatch):
    endpoint(named.acme, receiver.url, receiver)
    tasks = []
    monkeypatch.setattr(pump.pump_webhooks, "delay", lambda schema: tasks.append(schema))
    with tenant_context(named.acme):
        for _ in range(3):
            with django_capture_on_commit_callbacks(execute=True):
                actions.emit_event("message.sent", {"id": 1})
    assert tasks == [named.acme.schema_name]  # the first commit sent it; the others saw it on its way
    with tenant_context(named.acme):
        assert pump.pump(named.acme.schema_name) == 3
    with tenant_context(named.acme), django_capture_on_commit_callbacks(execute=True):
        actions.emit_event("message.sent", {"id": 2})
    assert len(tasks) == 2  # the pump cleared the flag when it found nothing left


def test_a_running_pump_keeps_its_wake_flag_and_a_killed_one_lets_go_soon(named, silent, settings, monkeypatch):
    """The flag says "a pump is on its way or running": renewed while the pump runs (a slow endpoint keeps it
    busy past the flag's TTL), it expires WAKE_TTL_SECONDS after a pump died, so the next commit wakes a new one
    (not a minute of waiting for the sweeper)."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    assert pump.WAKE_TTL_SECONDS <= 15 and pump.WAKE_RENEW_SECONDS < pump.WAKE_TTL_SECONDS
    monkeypatch.setattr(pump, "WAKE_TTL_SECONDS", 1)
    monkeypatch.setattr(pump, "WAKE_RENEW_SECONDS", 0.2)
    tasks = []
    monkeypatch.setattr(pump.pump_webhooks, "delay", lambda schema: tasks.append(schema))
    endpoint(named.acme, silent)
    emit_many(named.acme, 1)
    schema = named.acme.schema_name
    with tenant_context(named.acme):
        key = pump._wake_key(schema)
        assert pump.wake(schema) and tasks == [schema]
        seen = []
        original = pump.record

        def record(finished, now=None):  # the silent endpoint's timeout, 2 s after the claim: twice the TTL
            seen.append(pump.redis_client().exists(key))
            original(finished, now=now)

        monkeypatch.setattr(pump, "record", record)
        pump.pump(schema, run_seconds=2.5)
    assert seen and all(seen)  # still there after twice its TTL: renewed by the running pump
    # A pump killed now (its flag set, nobody renewing it): the flag is gone after the TTL.
    with tenant_context(named.acme):
        assert pump.redis_client().set(key, 1, ex=pump.WAKE_TTL_SECONDS)
        assert not pump.wake(schema)
        time.sleep(1.2)
        assert pump.wake(schema)


def test_an_endpoint_that_does_not_answer_backs_off_then_is_probed_one_delivery_at_a_time(named, receiver, settings,
                                                                                          monkeypatch):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_CONCURRENCY_PER_ENDPOINT = 4
    receiver.delay = 1.0  # answers after the timeout: no answer, as far as the pump is concerned
    slow = endpoint(named.acme, receiver.url, receiver)
    emit_many(named.acme, 10)
    claims = []
    original = pump.claim

    def claim(busy, **kwargs):
        found = original(busy, **kwargs)
        if found:
            claims.append(len(found))
        return found

    monkeypatch.setattr(pump, "claim", claim)
    start = timezone.now()
    schema = named.acme.schema_name
    with tenant_context(named.acme):
        # Its full concurrency once; all time out; then it is left alone (the other six wait, their retries unused).
        assert pump.pump(schema, now=start) == 4
        slow.refresh_from_db()
        assert slow.failure_streak == 1 and slow.backoff_until == start + timedelta(seconds=2)
        assert pump.count_due(now=start + timedelta(seconds=1)) == 0
        assert pump.pump(schema, now=start + timedelta(seconds=1)) == 0
    assert statuses(named.acme, slow.pk) == ["failed"] * 4 + ["pending"] * 6
    assert claims == [4]

    # Out of its backoff it is probed with one delivery; it answers, so the rest go at full concurrency again.
    receiver.delay = 0
    later = start + timedelta(seconds=3)  # the four failed ones are due 5 s after their attempt: not yet
    with tenant_context(named.acme):
        assert deliver_due_webhooks(now=later) == 6
        slow.refresh_from_db()
    assert claims == [4, 1, 4, 1]
    assert slow.failure_streak == 0 and slow.backoff_until is None
    assert statuses(named.acme, slow.pk) == ["failed"] * 4 + ["succeeded"] * 6


def test_a_replay_ends_the_endpoints_backoff(named, clients, receiver):
    live = endpoint(named.acme, receiver.url, receiver)
    [delivery] = emit_many(named.acme, 1)
    with tenant_context(named.acme):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status="dead", next_attempt_at=None)
        type(live).objects.filter(pk=live.pk).update(failure_streak=3,
                                                      backoff_until=timezone.now() + timedelta(minutes=1))
        actions.replay_delivery(named.acme, delivery, acting_user=named.alice)
        live.refresh_from_db()
    assert statuses(named.acme, live.pk) == ["succeeded"] and live.failure_streak == 0


def test_an_ordered_endpoint_gets_its_events_one_at_a_time_in_event_order(named, receiver, settings, monkeypatch,
                                                                           request):
    settings.WEBHOOK_CONCURRENCY_PER_ENDPOINT = 16
    receiver.statuses = [500, 200]  # the first attempt fails: it holds the ones after it until its retry
    ordered = endpoint(named.acme, receiver.url, receiver)
    other = Receiver()
    request.addfinalizer(other.close)
    concurrent = endpoint(named.acme, other.url, other)  # unordered, same events: not held by the other's failure
    with tenant_context(named.acme):
        type(ordered).objects.filter(pk=ordered.pk).update(ordered=True)
    emit_many(named.acme, 12)
    claims = []
    original = pump.claim

    def claim(busy, **kwargs):
        found = original(busy, **kwargs)
        claims.extend(sum(1 for d, _ in found if d.endpoint_id == ordered.pk) for _ in [0] if found)
        return found

    monkeypatch.setattr(pump, "claim", claim)
    start = timezone.now()
    schema = named.acme.schema_name
    with tenant_context(named.acme):
        assert pump.pump(schema, now=start) == 1 + 12
        [head] = WebhookDelivery.objects.filter(endpoint=ordered, status="failed")
    assert statuses(named.acme, ordered.pk) == ["failed"] + ["pending"] * 11
    assert statuses(named.acme, concurrent.pk) == ["succeeded"] * 12
    with tenant_context(named.acme):
        assert pump.pump(schema, now=head.next_attempt_at) == 12
    assert statuses(named.acme, ordered.pk) == ["succeeded"] * 12
    assert max(claims) == 1  # never two of the ordered endpoint's deliveries in flight
    with tenant_context(named.acme):
        order = {d.webhook_id: d.payload["data"]["id"] for d in WebhookDelivery.objects.filter(endpoint=ordered)}
    arrived = [order[h["webhook-id"]] for h, _ in receiver.delivered if h["webhook-id"] in order]
    assert arrived == [0, *range(12)]  # the head twice (failed, then retried), then the rest in event order
