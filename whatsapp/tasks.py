"""Celery's autodiscovery imports <app>.tasks: the whatsapp app's tasks live in its feature packages (their names
stay those of their first home, see tests/test_task_names.py)."""
from whatsapp.automation.tasks import ask_bot  # noqa: F401
from whatsapp.campaigns.tasks import feed_campaigns  # noqa: F401
from whatsapp.messaging.tasks import drain_session, sweep_queued_messages  # noqa: F401
from whatsapp.sessions.tasks import mark_orphaned_sessions  # noqa: F401
from whatsapp.webhooks.pump import pump_webhooks  # noqa: F401
from whatsapp.webhooks.tasks import deliver_due_webhooks, deliver_webhook  # noqa: F401
