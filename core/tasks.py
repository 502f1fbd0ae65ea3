"""Tasks any app may queue (core is an app for this: Celery's autodiscovery imports <app>.tasks)."""
from celery import shared_task
from django.core.mail import send_mail


@shared_task(name="accounts.tasks.send_email", acks_late=True, autoretry_for=(OSError,), retry_backoff=30,
             max_retries=8)
def send_email(*, to, subject, body):
    """One plain-text email; retried while the mail server is unreachable. Keeps its first name (accounts.tasks)."""
    send_mail(subject, body, None, [to])
