from celery import shared_task

from . import actions


@shared_task(name="billing.tasks.run_billing_clock", acks_late=True)
def run_billing_clock():
    """Beat, every 15 minutes: trial reminders, trial expiry, grace-period suspension (idempotent)."""
    return actions.run_billing_clock()


@shared_task(name="billing.tasks.process_stripe_event", bind=True, acks_late=True, max_retries=12)
def process_stripe_event(self, event_pk):
    """Apply a stored Stripe event (billing.stripe_events), retried with exponential backoff while it fails.

    Each attempt is all-or-nothing and stores its error on the StripeEvent. Run eagerly (inside the webhook
    request, or in tests) it does not retry in-process: the error propagates, the webhook answers 500 and
    Stripe delivers the event again."""
    from celery.utils.time import get_exponential_backoff_interval

    from . import stripe_events

    try:
        return stripe_events.process_event(event_pk)
    except Exception as exc:
        if self.request.is_eager or self.request.called_directly:
            raise
        countdown = get_exponential_backoff_interval(factor=30, retries=self.request.retries, maximum=3600,
                                                     full_jitter=True)
        raise self.retry(exc=exc, countdown=countdown)
