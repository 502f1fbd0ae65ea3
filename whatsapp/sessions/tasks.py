"""Session tasks (imported by whatsapp.tasks so that Celery's autodiscovery registers them)."""
from celery import shared_task

from . import events


@shared_task(name="whatsapp.sessions.tasks.mark_orphaned_sessions", ignore_result=True)
def mark_orphaned_sessions():
    """Beat, every 5 s: sessions whose host stopped renewing its lease say reconnecting, not connected, until a
    host takes them over (with no `whatsapp` host alive, until one is)."""
    return events.mark_orphaned()
