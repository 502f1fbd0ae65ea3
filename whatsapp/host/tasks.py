"""Tasks that run inside the `whatsapp` worker, on the session host of that process."""
from celery import shared_task

from . import runtime


@shared_task(name="whatsapp.host.tasks.sync_now", ignore_result=True)
def sync_now():
    host = runtime.current_host()
    if host is not None:
        host.sync()


@shared_task(name="whatsapp.host.tasks.session_command", ignore_result=True)
def session_command(session_key, action, kwargs):
    host = runtime.current_host()
    if host is not None:
        host.command(session_key, action, **kwargs)
