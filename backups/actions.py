"""State changes of backups, restores and data exports. Each records the request in one transaction (with an audit
row when a person acts) and hands the work to a worker on commit; the work itself is in runner, restoring, exports
and wal."""
import logging
import shutil
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import actions as audit
from core.errors import DomainError
from tenants.models import Tenant

from . import exports, notify, restoring, runner, storage, wal
from .errors import BackupError
from .models import ACTIVE_STATUSES, Backup, DataExport, Restore, Status

log = logging.getLogger(__name__)


def _tenant_scope(schema_name):
    return f"tenant:{schema_name}"


def _busy_with(scope):
    """The backup or restore of `scope` in progress, if any."""
    return (Backup.objects.filter(scope=scope, status__in=ACTIVE_STATUSES).first()
            or Restore.objects.filter(scope=scope, status__in=ACTIVE_STATUSES).first())


def _refuse_busy(scope, running):
    what = "backup" if isinstance(running, Backup) else "restore"
    raise DomainError(BackupError.ALREADY_RUNNING, f"A {what} of the same scope is already in progress "
                      f"(#{running.pk}); wait for it to finish.", {"scope": scope, f"{what}_id": running.pk})


def start_backup(*, kind, acting_user=None, tenant=None, compress=True, trigger=Backup.Trigger.MANUAL, verify=True):
    """Queue a backup of everything (`full`), of one tenant (`tenant`) or a PITR base backup (`base`). Two backups
    of one scope never run at once: the second is refused (409)."""
    if kind not in Backup.Kind.values:
        raise DomainError(BackupError.INVALID_TYPE, f"Unknown backup type '{kind}'.", {"allowed": Backup.Kind.values})
    if kind == Backup.Kind.TENANT:
        if tenant is None:
            raise DomainError(BackupError.TENANT_REQUIRED, "A tenant backup needs tenant_id.")
        if not tenant.has_schema or tenant.status == Tenant.Status.POOLED:
            raise DomainError(BackupError.TENANT_HAS_NO_SCHEMA, "That tenant has no data yet (it has no schema).")
        scope = _tenant_scope(tenant.schema_name)
    else:
        tenant = None
        scope = kind
    if kind == Backup.Kind.BASE:
        enabled, why = wal.archive_enabled()
        if not enabled:
            raise DomainError(BackupError.PITR_UNAVAILABLE, f"No point-in-time recovery: {why}.")
    running = _busy_with(scope)
    if running is not None:
        _refuse_busy(scope, running)
    try:
        with transaction.atomic():
            backup = Backup.objects.create(
                kind=kind, trigger=trigger, scope=scope, tenant=tenant, compress=bool(compress),
                tenant_name=tenant.name if tenant else "", tenant_schema=tenant.schema_name if tenant else "",
                created_by=acting_user if getattr(acting_user, "pk", None) else None)
            if acting_user is not None:
                audit.record("backups.backup_started", actor=acting_user, target=backup, tenant=tenant,
                             after={"kind": kind, "scope": scope})
            transaction.on_commit(lambda: runner.run_backup.delay(backup.pk, verify))
    except IntegrityError:  # the constraint: another request won the race for this scope
        _refuse_busy(scope, _busy_with(scope) or Backup(pk=0))
    return backup


def delete_backup(backup, *, acting_user):
    if backup.is_active:
        raise DomainError(BackupError.ALREADY_RUNNING, "This backup is still running.")
    _delete(backup)
    with transaction.atomic():
        audit.record("backups.backup_deleted", actor=acting_user, target=backup, tenant=backup.tenant,
                     before={"kind": backup.kind, "storage_name": backup.storage_name, "sha256": backup.sha256})
        backup.delete()


def _delete(backup):
    if backup.storage_name:
        store = storage.store()
        store.delete(backup.storage_name)
        store.delete(backup.storage_name + ".key.age")


def kept_backups():
    """Backups retention never deletes: the newest verified full backup, the newest verified backup of each tenant
    and the newest base backup (point-in-time recovery starts from it)."""
    kept = set()
    verified = Backup.objects.filter(status=Status.SUCCEEDED, verified_at__isnull=False)
    newest_full = verified.filter(kind=Backup.Kind.FULL).order_by("-created_at").first()
    if newest_full:
        kept.add(newest_full.pk)
    for scope in verified.filter(kind=Backup.Kind.TENANT).values_list("scope", flat=True).distinct():
        kept.add(verified.filter(scope=scope).order_by("-created_at").values_list("pk", flat=True).first())
    newest_base = Backup.objects.filter(kind=Backup.Kind.BASE, status=Status.SUCCEEDED).order_by("-created_at").first()
    if newest_base:
        kept.add(newest_base.pk)
    return kept


def cleanup_backups(*, days=None, acting_user=None, now=None):
    """Delete backups older than `days` (BACKUP_RETENTION_DAYS), never the ones kept_backups() names, and the WAL
    older than the oldest base backup left. Returns {"deleted": [ids], "kept": [ids]}."""
    days = settings.BACKUP_RETENTION_DAYS if days is None else int(days)
    if days < 0:
        raise DomainError(BackupError.INVALID_TYPE, "days must be 0 or more.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    kept = kept_backups()
    old = Backup.objects.filter(created_at__lt=cutoff).exclude(status__in=ACTIVE_STATUSES)
    deleted, kept_old = [], []
    for backup in old:
        if backup.pk in kept:
            kept_old.append(backup.pk)
            continue
        _delete(backup)
        deleted.append(backup.pk)
    with transaction.atomic():
        Backup.objects.filter(pk__in=deleted).delete()
        if acting_user is not None:
            audit.record("backups.cleanup", actor=acting_user, target=acting_user,
                         after={"days": days, "deleted": deleted, "kept": kept_old})
    _forget_old_wal()
    return {"deleted": deleted, "kept": kept_old}


def _forget_old_wal():
    oldest = Backup.objects.filter(kind=Backup.Kind.BASE, status=Status.SUCCEEDED).order_by("created_at").first()
    if oldest is None:
        return
    start = (oldest.manifest.get("base") or {}).get("start_segment")
    if not start:
        return
    store = storage.store()
    for name in store.listdir(wal.WAL_PREFIX):
        segment = name.rsplit("/", 1)[-1]
        if not segment.endswith(".history" + wal.WAL_SUFFIX) and segment[:24] < start:
            store.delete(name)


def request_restore(backup, *, acting_user, as_new_tenant=False, identity=None, name="", slug=""):
    """Restore a tenant backup in place (or as a new tenant) in the background; a full backup is restored offline
    with `manage.py restore_backup` (409 full_restore_needs_maintenance names the command)."""
    if not backup.is_restorable:
        raise DomainError(BackupError.NOT_RESTORABLE, "That backup did not complete: there is nothing to restore.",
                          {"status": backup.status})
    if backup.kind != Backup.Kind.TENANT:
        raise DomainError(BackupError.FULL_RESTORE_OFFLINE,
                          "A full restore replaces every tenant and runs with the system stopped: follow the "
                          f"maintenance steps in the README and run `manage.py restore_backup {backup.pk}`.",
                          {"command": f"manage.py restore_backup {backup.pk}"})
    mode = Restore.Mode.NEW_TENANT if as_new_tenant else Restore.Mode.IN_PLACE
    scope = f"new:{backup.pk}" if as_new_tenant else _tenant_scope(backup.tenant_schema)
    running = _busy_with(scope)
    if running is not None:
        _refuse_busy(scope, running)
    try:
        with transaction.atomic():
            restore = Restore.objects.create(backup=backup, mode=mode, scope=scope, tenant=backup.tenant,
                                             created_by=acting_user if getattr(acting_user, "pk", None) else None,
                                             details={"name": name, "slug": slug} if as_new_tenant else {})
            audit.record("backups.restore_requested", actor=acting_user, target=restore, tenant=backup.tenant,
                         after={"backup": backup.pk, "mode": mode})
            transaction.on_commit(lambda: (restoring.keep_identity(restore.pk, identity),
                                           restoring.run_restore.delay(restore.pk)))
    except IntegrityError:
        _refuse_busy(scope, _busy_with(scope) or Restore(pk=0))
    return restore


def request_export(tenant, *, acting_user, now=None):
    """Queue an "Export my data" of the tenant: a few a day (BACKUP_EXPORTS_PER_DAY), one at a time."""
    now = now or timezone.now()
    recent = DataExport.objects.filter(tenant=tenant, created_at__gte=now - timedelta(days=1)).order_by("created_at")
    if recent.count() >= settings.BACKUP_EXPORTS_PER_DAY:
        error = DomainError(BackupError.EXPORT_LIMIT, f"At most {settings.BACKUP_EXPORTS_PER_DAY} exports a day; "
                            "try again tomorrow.")
        error.wait = max(1, int((recent.first().created_at + timedelta(days=1) - now).total_seconds()))
        raise error
    try:
        with transaction.atomic():
            export = DataExport.objects.create(tenant=tenant, created_by=acting_user)
            audit.record("backups.data_export_requested", actor=acting_user, target=export, tenant=tenant)
            transaction.on_commit(lambda: exports.run_export.delay(export.pk))
    except IntegrityError:
        raise DomainError(BackupError.ALREADY_RUNNING, "An export of this workspace is already being prepared.",
                          ) from None
    return export


def record_export_download(export, *, acting_user):
    with transaction.atomic():
        audit.record("backups.data_export_downloaded", actor=acting_user, target=export, tenant=export.tenant)


def housekeeping(now=None):
    """Every minute: work whose process died ends `failed` (its partial files removed, the admins alerted); work
    folders no live work owns are removed; replaced schemas past their grace and expired exports are deleted."""
    now = now or timezone.now()
    failed = []
    for model in (Backup, Restore, DataExport):
        for row in model.objects.filter(status=Status.RUNNING):
            if runner.worker_is_dead(row, now):
                runner.fail(row, "The worker doing this died midway (killed, out of memory or disk); nothing "
                                 "partial was kept.")
                failed.append(str(row))
        lost = now - timedelta(hours=6)
        for row in model.objects.filter(status=Status.QUEUED, created_at__lt=lost):
            runner.fail(row, "No worker picked this up within six hours.")
            failed.append(str(row))
    live = {runner.work_name(row) for model in (Backup, Restore, DataExport)
            for row in model.objects.filter(status__in=ACTIVE_STATUSES)}
    root = storage.work_root()
    for path in root.iterdir():
        age = now.timestamp() - path.stat().st_mtime
        # A verification or recovery runs after its backup is over (no live row names it): give it a day.
        patience = 86400 if path.name.startswith(("verify-", "pitr-", "full-restore-")) else 600
        if path.name.split(".")[0] not in live and age > patience:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    restoring.drop_expired_previous_schemas(now)
    exports.delete_expired(now)
    return failed


# --- what beat runs -----------------------------------------------------------------------------------------------

@shared_task(name="backups.tasks.nightly_backup", ignore_result=True)
def nightly_backup():
    """BACKUP_SCHEDULE: a full backup (verified by the worker that makes it), then retention."""
    try:
        start_backup(kind=Backup.Kind.FULL, trigger=Backup.Trigger.SCHEDULED)
    except DomainError as exc:
        notify.email_platform_admins("The nightly backup did not start", exc.message)
    cleanup_backups()


@shared_task(name="backups.tasks.base_backup", ignore_result=True)
def scheduled_base_backup():
    """BACKUP_BASE_SCHEDULE: a base backup for point-in-time recovery, when this Postgres archives its WAL."""
    enabled, why = wal.archive_enabled()
    if not enabled:
        log.info("no base backup: %s", why)
        return
    start_backup(kind=Backup.Kind.BASE, trigger=Backup.Trigger.SCHEDULED, verify=True)


@shared_task(name="backups.tasks.housekeeping", ignore_result=True)
def housekeeping_task():
    housekeeping()
