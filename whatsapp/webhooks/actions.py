"""State changes of webhook endpoints and deliveries. emit_event is what the messaging and session code call,
inside the tenant's schema."""
import json

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from audit import actions as audit
from core import rows
from core.errors import DomainError

from . import EVENTS, pump
from . import delivery as wire
from .errors import WebhookError
from .models import WebhookDelivery, WebhookEndpoint

S = WebhookDelivery.Status


def _wake_on_commit(now=None):
    """The schema's pump sends what is due once the transaction commits (the callback may run elsewhere)."""
    schema = connection.schema_name

    def send():
        with schema_context(schema):
            pump.wake(schema, now=now)

    transaction.on_commit(send)


def emit_event(event_type, data, *, now=None):
    """Store one delivery of `event_type` per enabled endpoint subscribed to it; each is attempted on commit.
    Returns the deliveries."""
    return emit_events(event_type, [data], now=now)


def emit_events(event_type, items, *, now=None):
    """emit_event for many events of one type at once (a batch of messages sent or receipts): one query for the
    subscribed endpoints and one insert, whatever the number of events; the schema's pump sends them on commit
    (whatsapp.webhooks.pump). Returns the deliveries."""
    if event_type not in EVENTS:
        raise ValueError(f"Unknown webhook event '{event_type}'.")
    if not items:
        return []
    now = wire.current_time(now)
    # On every batch of messages the host sends or hears about: written out, not compiled each time (core.rows).
    endpoints = rows.select(WebhookEndpoint, "e", "WHERE e.enabled AND e.events @> %s::jsonb",
                            [json.dumps([event_type])])
    if not endpoints:
        return []
    with transaction.atomic():
        deliveries = WebhookDelivery.objects.bulk_create([
            WebhookDelivery(endpoint=endpoint, event_type=event_type,
                            payload={"type": event_type, "timestamp": now, "data": data},
                            webhook_id=wire.new_webhook_id(), next_attempt_at=now, created_at=now)
            for data in items for endpoint in endpoints
        ])
        schema = connection.schema_name
        transaction.on_commit(lambda: pump.wake(schema))  # one pump per burst sends them, concurrently
    return deliveries


def _snapshot(endpoint):
    return {"url": endpoint.url, "events": list(endpoint.events), "description": endpoint.description,
            "enabled": endpoint.enabled, "ordered": endpoint.ordered}


def create_endpoint(tenant, *, acting_user, url, events, description="", enabled=True, ordered=False):
    """Returns (endpoint, secret): the secret is only ever available here."""
    secret = wire.new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(url=url, events=list(events), description=description,
                                                  ordered=ordered, secret_encrypted=wire.encrypt_secret(secret))
        if not enabled:
            _set_enabled(endpoint, False)
            endpoint.save()
        audit.record("webhook.endpoint_created", actor=acting_user, target=endpoint, after=_snapshot(endpoint),
                     tenant=tenant)
    return endpoint, secret


def _set_enabled(endpoint, enabled):
    endpoint.enabled = enabled
    if enabled:
        endpoint.disabled_reason, endpoint.disabled_at = "", None
    else:
        endpoint.disabled_reason, endpoint.disabled_at = "Disabled by the tenant.", timezone.now()


def update_endpoint(tenant, endpoint, *, acting_user, **changes):
    """Change url, events, description, ordered or enabled. Re-enabling clears the reason it was disabled; due
    deliveries then go out with the next sweep."""
    with transaction.atomic():
        before = _snapshot(endpoint)
        for field in ("url", "events", "description", "ordered"):
            if field in changes:
                setattr(endpoint, field, changes[field])
        if "enabled" in changes and changes["enabled"] != endpoint.enabled:
            _set_enabled(endpoint, changes["enabled"])
        endpoint.save()
        audit.record("webhook.endpoint_updated", actor=acting_user, target=endpoint, before=before,
                     after=_snapshot(endpoint), tenant=tenant)
    return endpoint


def delete_endpoint(tenant, endpoint, *, acting_user):
    """The endpoint goes with its deliveries."""
    with transaction.atomic():
        audit.record("webhook.endpoint_deleted", actor=acting_user, target=endpoint, before=_snapshot(endpoint),
                     tenant=tenant)
        endpoint.delete()


def _require_enabled(endpoint):
    if not endpoint.enabled:
        raise DomainError(WebhookError.ENDPOINT_DISABLED,
                          f"The endpoint is disabled: {endpoint.disabled_reason or 'disabled'} Enable it first.")


def replay_delivery(tenant, delivery, *, acting_user, now=None):
    """A new attempt now, whatever the delivery's status (dead ones too), with the same webhook-id. If it fails,
    the schedule continues from the delivery's attempt count (dead again once exhausted). 409 endpoint_disabled."""
    _require_enabled(delivery.endpoint)
    clock, now = now, wire.current_time(now)
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=S.PENDING, next_attempt_at=now)
        _end_backoff(delivery.endpoint_id)
        audit.record("webhook.delivery_replayed", actor=acting_user, target=delivery,
                     before={"status": delivery.status}, after={"status": S.PENDING}, tenant=tenant)
        _wake_on_commit(clock)
    delivery.refresh_from_db()
    return delivery


def _end_backoff(endpoint_id):
    """A person asked for an attempt now: an endpoint backing off is probed at once (one delivery at a time until
    one succeeds)."""
    WebhookEndpoint.objects.filter(pk=endpoint_id, backoff_until__isnull=False).update(backoff_until=None)


def replay_dead(tenant, endpoint, *, acting_user, now=None):
    """Every dead-lettered delivery of the endpoint is due again now (same webhook-ids). Returns how many.
    409 endpoint_disabled."""
    _require_enabled(endpoint)
    clock, now = now, wire.current_time(now)
    with transaction.atomic():
        dead = endpoint.deliveries.filter(status=S.DEAD)
        ids = list(dead.order_by("created_at", "id").values_list("id", flat=True))
        WebhookDelivery.objects.filter(pk__in=ids).update(status=S.PENDING, next_attempt_at=now)
        if ids:
            audit.record("webhook.dead_replayed", actor=acting_user, target=endpoint, after={"replayed": len(ids)},
                         tenant=tenant)
        if ids:
            _end_backoff(endpoint.pk)
            _wake_on_commit(clock)
    return len(ids)


def erase_deliveries(erasure):
    """A contact's erasure (whatsapp.conversations.erasure): the stored deliveries of its messages' events carry their
    text and number; they go, after messaging found the messages (erasure.found["message_ids"])."""
    ids = erasure.found.get("message_ids") or []
    if ids:
        deleted, _ = WebhookDelivery.objects.filter(event_type__startswith="message.",
                                                    payload__data__id__in=ids).delete()
        erasure.count("webhook_deliveries", deleted)
