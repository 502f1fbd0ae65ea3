"""Backups, restores and data exports (public schema: a backup spans schemas). Changed only by backups.actions and
the work it runs (backups.runner); pages and the API read them."""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)


class Work(models.Model):
    """What long work shares: a status, progress the pages follow, and a heartbeat a sweeper checks."""

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent")
    stage = models.CharField(max_length=200, blank=True, help_text="What the worker is doing, for people")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Renewed as the work progresses; a running row whose heartbeat is older than BACKUP_STALE_SECONDS died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # "<host>:<pid>" of the process doing it: a dead pid on this host means it died (SIGKILL, OOM) at once.
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        abstract = True

    @property
    def is_active(self):
        return self.status in ACTIVE_STATUSES

    @property
    def duration_seconds(self):
        if self.started_at is None:
            return None
        return round(((self.finished_at or timezone.now()) - self.started_at).total_seconds(), 1)


class Backup(Work):
    class Kind(models.TextChoices):
        FULL = "full", "Full"
        TENANT = "tenant", "Tenant"
        BASE = "base", "Base backup (point-in-time recovery)"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULED = "scheduled", "Nightly"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    # "full", "base" or "tenant:<schema>": two backups of one scope never run at once (the constraint below).
    scope = models.CharField(max_length=80)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="backups")
    tenant_name = models.CharField(max_length=120, blank=True, help_text="Kept when the tenant is deleted")
    tenant_schema = models.CharField(max_length=63, blank=True)
    compress = models.BooleanField(default=True)
    storage_name = models.CharField(max_length=500, blank=True, help_text="The file's name in the backup storage")
    size = models.BigIntegerField(null=True, blank=True, help_text="Bytes stored")
    sha256 = models.CharField(max_length=64, blank=True)
    encryption = models.CharField(max_length=40, blank=True, help_text="age-recipients or age-passphrase")
    manifest = models.JSONField(default=dict, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["scope"], condition=Q(status__in=ACTIVE_STATUSES),
                                               name="backup_one_active_per_scope")]

    def __str__(self):
        what = self.tenant_name or self.tenant_schema if self.kind == self.Kind.TENANT else self.get_kind_display()
        return f"Backup #{self.pk} {what} ({self.status})"

    @property
    def is_restorable(self):
        return self.status == Status.SUCCEEDED and bool(self.storage_name)


class Restore(Work):
    class Mode(models.TextChoices):
        IN_PLACE = "in_place", "In place"
        NEW_TENANT = "new_tenant", "As a new tenant"

    backup = models.ForeignKey(Backup, null=True, on_delete=models.SET_NULL, related_name="restores")
    mode = models.CharField(max_length=12, choices=Mode.choices)
    # "tenant:<schema>" of the schema written: a restore and a backup of one tenant never overlap.
    scope = models.CharField(max_length=80)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="restores")
    # In place: where the replaced schema went (dropped after BACKUP_RESTORE_GRACE_DAYS).
    previous_schema = models.CharField(max_length=63, blank=True)
    previous_dropped_at = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["scope"], condition=Q(status__in=ACTIVE_STATUSES),
                                               name="restore_one_active_per_scope")]

    def __str__(self):
        return f"Restore #{self.pk} of backup #{self.backup_id} ({self.status})"


class DataExport(Work):
    """A tenant owner's copy of the workspace's data (GDPR): a zip of JSON files and media, kept for a day."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="data_exports")
    storage_name = models.CharField(max_length=500, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["tenant"], condition=Q(status__in=ACTIVE_STATUSES),
                                               name="export_one_active_per_tenant")]

    def __str__(self):
        return f"Export #{self.pk} of {self.tenant_id} ({self.status})"

    @property
    def is_downloadable(self):
        return (self.status == Status.SUCCEEDED and self.deleted_at is None and self.expires_at is not None
                and self.expires_at > timezone.now())
