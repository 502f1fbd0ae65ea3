from celery import shared_task
from django_tenants.utils import schema_context

from . import bot, escalation


@shared_task(name="whatsapp.automation.tasks.ask_bot", ignore_result=True)
def ask_bot(schema_name, message_id):
    """The bot webhook for one inbound message (whatsapp.automation.bot), in the tenant's schema."""
    with schema_context(schema_name):
        bot.ask(message_id)


@shared_task(name="whatsapp.automation.tasks.escalate", ignore_result=True)
def escalate(schema_name, log_id):
    """Email and Telegram to the escalation contacts about a handoff request (whatsapp.automation.escalation)."""
    with schema_context(schema_name):
        escalation.escalate(log_id)
