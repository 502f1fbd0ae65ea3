"""Celery's autodiscovery imports <app>.tasks: the webhook tasks live in whatsapp.webhooks.tasks."""
from .webhooks.tasks import deliver_due_webhooks, deliver_webhook  # noqa: F401

from celery import shared_task  # noqa: E402


@shared_task(name="whatsapp.tasks.drain_session", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def drain_session(schema_name, session_id):
    """Send a session's queued messages: on the host running it, else through the host holding its lease
    (whatsapp.sending.route). Acknowledged once done: a drain cut short by a dying worker is delivered again,
    and it only ever claims what is still queued (the attempt cap is in the rows)."""
    from .sending import route

    route(schema_name, session_id)


@shared_task(name="whatsapp.tasks.sweep_queued_messages", ignore_result=True)
def sweep_queued_messages():
    """Beat, every 30 s: in every active tenant's schema, drain again the sessions with messages stuck in `queued`."""
    from django_tenants.utils import schema_context

    from tenants.models import Tenant

    from .messaging import sweep_queued

    swept = 0
    for schema in Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True):
        with schema_context(schema):
            swept += sweep_queued()
    return swept
