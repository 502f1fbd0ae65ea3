from celery import shared_task

from . import actions


@shared_task(name="alerts.tasks.check_alerts", ignore_result=True)
def check_alerts():
    """Beat, every minute: fire and resolve alerts (alerts.actions.check)."""
    fired, resolved = actions.check()
    return len(fired), len(resolved)
