"""Celery's autodiscovery imports <app>.tasks."""
from celery import shared_task

from . import actions
from .stripe_events import process_stripe_event  # noqa: F401  (defined beside the processing it runs)


@shared_task(name="billing.tasks.run_billing_clock", acks_late=True)
def run_billing_clock():
    """Beat, every 15 minutes: trial reminders, trial expiry, grace-period suspension (idempotent)."""
    return actions.run_billing_clock()
