"""Task names are part of the deployment's state: queued messages and beat entries name tasks, so a task keeps
its name when its code moves (every task is declared with an explicit name=)."""
from django.conf import settings

from config.celery import app

# The names queued work and beat entries use. A rename needs a migration path (an alias), not an edit here.
TASK_NAMES = {
    "accounts.tasks.send_email",
    "accounts.tasks.delete_due_workspaces",
    "alerts.tasks.check_alerts",
    "analytics.tasks.flush_api_usage",
    "analytics.tasks.fold_rollups",
    "analytics.tasks.purge_old_events",
    "billing.tasks.run_billing_clock",
    "backups.tasks.housekeeping",
    "backups.tasks.nightly_backup",
    "backups.tasks.base_backup",
    "backups.tasks.run_backup",
    "backups.tasks.run_export",
    "backups.tasks.run_restore",
    "backups.tasks.ship_wal",
    "billing.tasks.process_stripe_event",
    "tenants.tasks.refill_tenant_pool",
    "tenants.tasks.provision_tenant",
    "tenants.tasks.announce_tenant_change",
    "whatsapp.automation.tasks.ask_bot",
    "whatsapp.host.tasks.sync_now",
    "whatsapp.host.tasks.session_command",
    "whatsapp.tasks.drain_session",
    "whatsapp.campaigns.tasks.feed_campaigns",
    "whatsapp.tasks.sweep_queued_messages",
    "whatsapp.sessions.tasks.mark_orphaned_sessions",
    "whatsapp.webhooks.tasks.deliver_webhook",
    "whatsapp.webhooks.tasks.deliver_due_webhooks",
    "whatsapp.webhooks.tasks.pump_webhooks",
}


def _registered():
    app.loader.import_default_modules()
    return {name for name in app.tasks if not name.startswith("celery.")}


def test_every_task_keeps_its_name():
    assert TASK_NAMES <= _registered()


def test_every_beat_entry_names_a_registered_task():
    registered = _registered()
    assert {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()} <= registered
