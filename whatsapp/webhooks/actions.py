"""State changes of webhook endpoints and deliveries. emit_event is what the messaging and session code call,
inside the tenant's schema."""
import json

from django.db import connection, transaction
from django.utils import timezone

from core import rows
from whatsapp.models import WebhookDelivery, WebhookEndpoint

from . import EVENTS
from . import delivery as wire

S = WebhookDelivery.Status


def _enqueue_on_commit(delivery_ids):
    """Attempt these deliveries once the transaction commits, in this schema (the callback may run elsewhere)."""
    if not delivery_ids:
        return
    schema = connection.schema_name

    def send():
        from django_tenants.utils import schema_context

        from .tasks import deliver_webhook

        with schema_context(schema):
            for delivery_id in delivery_ids:
                deliver_webhook.delay(delivery_id)

    transaction.on_commit(send)


def emit_event(event_type, data, *, now=None):
    """Store one delivery of `event_type` per enabled endpoint subscribed to it; each is attempted on commit.
    Returns the deliveries."""
    return emit_events(event_type, [data], now=now)


def emit_events(event_type, items, *, now=None):
    """emit_event for many events of one type at once (a batch of messages sent or receipts): one query for the
    subscribed endpoints and one insert, whatever the number of events. Returns the deliveries."""
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
        _enqueue_on_commit([d.pk for d in deliveries])
    return deliveries


def create_endpoint(*, url, events, description=""):
    """Returns (endpoint, secret): the secret is only ever available here."""
    secret = wire.new_secret()
    endpoint = WebhookEndpoint.objects.create(url=url, events=list(events), description=description,
                                              secret_encrypted=wire.encrypt_secret(secret))
    return endpoint, secret


def update_endpoint(endpoint, **changes):
    """Change url, events, description or enabled. Re-enabling clears the reason it was disabled; due deliveries
    then go out with the next sweep."""
    for field in ("url", "events", "description"):
        if field in changes:
            setattr(endpoint, field, changes[field])
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.disabled_reason, endpoint.disabled_at = "", None
        else:
            endpoint.disabled_reason, endpoint.disabled_at = "Disabled by the tenant.", timezone.now()
    endpoint.save()
    return endpoint


def delete_endpoint(endpoint):
    endpoint.delete()  # its deliveries go with it


class EndpointDisabled(Exception):
    pass


def replay_delivery(delivery, *, now=None):
    """A new attempt now, whatever the delivery's status (dead ones too), with the same webhook-id. If it fails,
    the schedule continues from the delivery's attempt count (dead again once exhausted)."""
    if not delivery.endpoint.enabled:
        raise EndpointDisabled(delivery.endpoint.disabled_reason or "The endpoint is disabled.")
    now = wire.current_time(now)
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=S.PENDING, next_attempt_at=now)
        _enqueue_on_commit([delivery.pk])
    delivery.refresh_from_db()
    return delivery


# A bulk replay hands this many to tasks at once; the rest are due now and go out with the next sweeps.
REPLAY_ENQUEUE_LIMIT = 100


def replay_dead(endpoint, *, now=None):
    """Every dead-lettered delivery of the endpoint is due again now (same webhook-ids). Returns how many."""
    if not endpoint.enabled:
        raise EndpointDisabled(endpoint.disabled_reason or "The endpoint is disabled.")
    now = wire.current_time(now)
    with transaction.atomic():
        dead = endpoint.deliveries.filter(status=S.DEAD)
        ids = list(dead.order_by("created_at", "id").values_list("id", flat=True))
        WebhookDelivery.objects.filter(pk__in=ids).update(status=S.PENDING, next_attempt_at=now)
        _enqueue_on_commit(ids[:REPLAY_ENQUEUE_LIMIT])
    return len(ids)
