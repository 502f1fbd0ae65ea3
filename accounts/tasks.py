from celery import shared_task
from django.core.mail import send_mail


@shared_task(name="accounts.tasks.send_email", acks_late=True, autoretry_for=(OSError,), retry_backoff=30,
             max_retries=8)
def send_email(*, to, subject, body):
    send_mail(subject, body, None, [to])
