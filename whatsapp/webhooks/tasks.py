"""Webhook tasks (imported by whatsapp.messaging.tasks so that Celery's autodiscovery registers them)."""
from celery import shared_task
from django.utils.dateparse import parse_datetime

from tenants.models import Tenant

from . import delivery as wire


@shared_task(name="whatsapp.webhooks.tasks.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id, lease=None, now=None):
    """One attempt of one delivery, in the schema the task was sent from. `lease` comes from a sweeper's claim;
    without it (the first attempt, on commit; replays) the delivery must be due. `now` (ISO) is for tests."""
    now = parse_datetime(now) if now else None
    lease = parse_datetime(lease) if lease else None
    claimed = wire.claim(delivery_id, now=now, lease=lease)
    if claimed is not None:
        wire.attempt(claimed, now=now)


@shared_task(name="whatsapp.webhooks.tasks.deliver_due_webhooks", ignore_result=True)
def deliver_due_webhooks(now=None):
    """Beat, every few seconds: in every active tenant's schema, claim the due deliveries and send one task each."""
    from django_tenants.utils import schema_context


    clock = parse_datetime(now) if isinstance(now, str) else now
    claimed = 0
    for schema in Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True):
        with schema_context(schema):
            due = wire.claim_due(now=clock)
            for delivery_id, lease in due:
                deliver_webhook.delay(delivery_id, lease.isoformat(), clock.isoformat() if clock else None)
        claimed += len(due)
    return claimed
