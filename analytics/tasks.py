"""Analytics' beat jobs: fold the counted message changes into the rollups of every tenant, and drop custom events
older than ANALYTICS_RETENTION_DAYS."""
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.models import Tenant

from . import rollups, usage
from .models import Event

log = logging.getLogger(__name__)
COUNTED_STATUSES = (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED)


def _schemas():
    return Tenant.objects.filter(status__in=COUNTED_STATUSES).values_list("schema_name", flat=True)


@shared_task(name="analytics.tasks.fold_rollups", ignore_result=True)
def fold_rollups():
    """Beat: in every tenant's schema, add the message changes counted since the last fold to the rollups."""
    folded = 0
    for schema in _schemas():
        try:
            with schema_context(schema):
                folded += rollups.fold() or 0
        except Exception:  # one schema's trouble must not stop the others' rollups
            log.exception("analytics fold failed in %s", schema)
    return folded


def purge_events(days):
    """Delete the current schema's custom events older than `days` days; returns how many."""
    deleted, _ = Event.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted


@shared_task(name="analytics.tasks.purge_old_events", ignore_result=True)
def purge_old_events():
    """Beat, hourly: custom events are kept ANALYTICS_RETENTION_DAYS days in every tenant's schema."""
    deleted = 0
    for schema in _schemas():
        with schema_context(schema):
            deleted += purge_events(settings.ANALYTICS_RETENTION_DAYS)
    return deleted


@shared_task(name="analytics.tasks.flush_api_usage", ignore_result=True)
def flush_api_usage():
    """Beat, every minute: the API requests counted in Redis go into each tenant's hourly usage rows."""
    return usage.flush()
