"""The sending pipeline's Celery tasks."""
from celery import shared_task
from django_tenants.utils import schema_context

from tenants.models import Tenant

from .actions import sweep_queued
from .drain import drain_session  # noqa: F401  (defined beside the drain that wakes it)


@shared_task(name="whatsapp.tasks.sweep_queued_messages", ignore_result=True)
def sweep_queued_messages():
    """Beat, every 30 s: in every active tenant's schema, drain again the sessions with messages stuck in `queued`."""
    swept = 0
    for schema in Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True):
        with schema_context(schema):
            swept += sweep_queued()
    return swept
