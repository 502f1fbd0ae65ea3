"""Where backup failures are told: the alerts app (its channels: email to the platform admins, the signed webhook,
Telegram; its page /platform/alerts/). `backup_incidents` is one of its rules, registered in BackupsConfig.ready():
the newest finished backup of a scope that failed, or was made but did not verify, fires an alert that resolves
when a later backup of that scope succeeds and verifies; likewise the newest restore of a scope. `wal_incidents`
watches the WAL spool. When something
fails, `check_alerts_soon()` runs the check at once instead of within the minute. A nightly backup that could not
even start leaves no row to watch: that one is an email."""
import logging
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from alerts.models import Alert
from alerts.rules import Incident
from alerts.tasks import check_alerts
from core.tasks import send_email

from . import wal
from .models import Backup, Restore, Status

log = logging.getLogger(__name__)
FINISHED = (Status.SUCCEEDED, Status.FAILED)
RULES = ("backup_failed", "backup_unverified", "restore_failed", "wal_not_shipped")


def firing_alerts():
    """The backup alerts firing now, for the Backups page."""
    return Alert.objects.filter(state=Alert.State.FIRING, rule__in=RULES).order_by("-started_at")


def _newest_finished_per_scope(model):
    return (model.objects.filter(status__in=FINISHED).order_by("scope", "-created_at", "-id").distinct("scope"))


def _what(backup):
    if backup.kind == Backup.Kind.TENANT:
        return f"Backup #{backup.pk} of {backup.tenant_name or backup.tenant_schema}"
    return f"Backup #{backup.pk} ({backup.get_kind_display().lower()})"


def backup_incidents(now):
    """{key: Incident}: scopes whose newest backup failed or did not verify, and whose newest restore failed.
    Platform alerts (no tenant): a tenant's owners are not the ones to act on a backup."""
    found = {}
    for backup in _newest_finished_per_scope(Backup):
        details = {"backup_id": backup.pk, "scope": backup.scope, "trigger": backup.trigger}
        if backup.status == Status.FAILED:
            found[f"backup_failed:{backup.scope}"] = Incident(
                "backup_failed", f"{_what(backup)} failed: {backup.error}"[:500], details=details)
        elif backup.verification_error:
            found[f"backup_unverified:{backup.scope}"] = Incident(
                "backup_unverified", f"{_what(backup)} did not verify: {backup.verification_error}"[:500],
                details=details)
    for restore in _newest_finished_per_scope(Restore).filter(status=Status.FAILED):
        found[f"restore_failed:{restore.scope}"] = Incident(
            "restore_failed", f"Restore #{restore.pk} of backup #{restore.backup_id} failed: {restore.error}"[:500],
            details={"restore_id": restore.pk, "backup_id": restore.backup_id, "scope": restore.scope})
    return found


def wal_incidents(now):
    """Archived WAL waiting in the spool much longer than the shipping interval: nobody ships it (the Procfile's
    `wal` process is not running, or fails), and point-in-time recovery after losing the machine would lose all of
    it. Seen only where the spool is (the database's machine, where `wal` must run)."""
    spool = settings.BACKUP_WAL_SPOOL_DIR
    if not os.path.isdir(spool):
        return {}
    waiting = [entry.stat().st_mtime for entry in os.scandir(spool) if wal.is_shippable(entry.name)]
    if not waiting:
        return {}
    age = now.timestamp() - min(waiting)
    if age <= max(60, 3 * settings.BACKUP_WAL_SHIP_SECONDS):
        return {}
    return {"wal_not_shipped": Incident(
        "wal_not_shipped", f"{len(waiting)} archived WAL file(s) waiting to be shipped, the oldest for {age:.0f} s: "
        "is the `wal` process running? Point-in-time recovery would lose them with the machine.",
        details={"files": len(waiting), "oldest_seconds": round(age), "spool": str(spool)})}


def check_alerts_soon():
    """Fire what just failed now (after this transaction commits), not at beat's next minute."""
    def check():
        try:
            check_alerts.delay()
        except Exception:  # the broker down: beat's own check fires it within the minute
            log.warning("could not queue an alert check", exc_info=True)

    transaction.on_commit(check)


def email_platform_admins(subject, body):
    """An email to every platform admin (send_email retries while the mail server is down)."""
    log.error("backup alert: %s", subject)
    emails = get_user_model().objects.filter(is_staff=True, is_active=True).values_list("email", flat=True)
    for email in emails:
        send_email.delay(to=email, subject=f"[Switchboard] {subject}",
                         body=f"{body}\n\nBackups: {settings.SITE_URL}/platform/backups/\n")
