"""Celery's autodiscovery imports <app>.tasks: the webhook tasks live in whatsapp.webhooks.tasks."""
from .webhooks.tasks import deliver_due_webhooks, deliver_webhook  # noqa: F401

from celery import shared_task  # noqa: E402


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def send_message(schema_name, message_id, live_updates=None):
    """Count an attempt of a queued message and send it, on the host running its session or through the host
    holding its lease (messaging.dispatch; the attempt cap is in the row: a task redelivered after a worker died
    cannot send forever). `live_updates`: the open pages'
    updates of the just-queued message (whatsapp.live.deferred_updates), published first."""
    from . import live
    from .messaging import dispatch

    live.publish_all(live_updates)
    dispatch(schema_name, message_id)


@shared_task(ignore_result=True)
def sweep_queued_messages():
    """Beat, every 30 s: in every active tenant's schema, dispatch again the messages stuck in `queued`."""
    from django_tenants.utils import schema_context

    from tenants.models import Tenant

    from .messaging import sweep_queued

    swept = 0
    for schema in Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True):
        with schema_context(schema):
            swept += sweep_queued()
    return swept
