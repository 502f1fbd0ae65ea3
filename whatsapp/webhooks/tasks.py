"""Webhook tasks (imported by whatsapp.messaging.tasks so that Celery's autodiscovery registers them)."""
from celery import shared_task
from django.utils.dateparse import parse_datetime
from django_tenants.utils import schema_context

from tenants.models import Tenant

from . import delivery as wire
from . import pump


@shared_task(name="whatsapp.webhooks.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id, lease=None, now=None):
    """One attempt of one delivery, in the schema the task was sent from: what earlier versions queued per delivery
    (kept so that such tasks still run after an upgrade; deliveries now go through the schema's pump). `lease`
    comes from a sweeper's claim; without it the delivery must be due. `now` (ISO) is for tests."""
    now = parse_datetime(now) if now else None
    lease = parse_datetime(lease) if lease else None
    claimed = wire.claim(delivery_id, now=now, lease=lease)
    if claimed is not None:
        wire.attempt(claimed, now=now)


@shared_task(name="whatsapp.webhooks.tasks.deliver_due_webhooks", ignore_result=True)
def deliver_due_webhooks(now=None):
    """Beat, every few seconds: wake the pump of every active tenant's schema that has due deliveries (retries, an
    endpoint enabled again or out of its backoff, a pump that died mid-flight). Returns how many were due."""
    clock = parse_datetime(now) if isinstance(now, str) else now
    due = 0
    for schema in Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True):
        with schema_context(schema):
            found = pump.count_due(now=clock)
            if found:
                pump.wake(schema, now=clock)
        due += found
    return due
