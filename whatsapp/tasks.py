"""Celery's autodiscovery imports <app>.tasks: the webhook tasks live in whatsapp.webhooks.tasks."""
from .webhooks.tasks import deliver_due_webhooks, deliver_webhook  # noqa: F401
