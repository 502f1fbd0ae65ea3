from celery import shared_task

from . import actions


@shared_task(acks_late=True)
def run_billing_clock():
    """Beat, every 15 minutes: trial reminders, trial expiry, grace-period suspension (idempotent)."""
    return actions.run_billing_clock()
