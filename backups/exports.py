"""A tenant owner's "Export my data" (GDPR): a zip of JSON files (one per kind of record: sessions' metadata,
contacts, groups, conversations, messages, webhooks without their secrets, settings, members, audit entries,
analytics) and the media files, built by a worker with progress, kept BACKUP_EXPORT_LINK_HOURS and emailed as a link.

Records are written one at a time into the zip (no table is held in memory), as JSON arrays of plain objects.
Fields that hold secrets (a name containing "secret", "password" or "token", key hashes, live QR and pairing
codes) are left out.
"""
import json
import logging
import os
import zipfile
from datetime import timedelta
from pathlib import Path

from celery import shared_task
from django.apps import apps
from django.conf import settings
from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Membership
from audit.models import AuditLog
from core import crypto
from core.permissions import can_export_data
from core.tasks import send_email

from . import contents, storage
from .models import DataExport, Status
from .progress import Reporter, publish
from .runner import claim, fail, work_name

log = logging.getLogger(__name__)

TENANT_DATA_APPS = ("whatsapp", "analytics")
SECRET_WORDS = ("secret", "password", "token", "key_hash")
TRANSIENT_FIELDS = {"qr_code", "pair_code"}
SIGNING_SALT = "backups.data-export"


def exported_fields(model):
    return [field for field in model._meta.concrete_fields
            if field.name not in TRANSIENT_FIELDS and not any(word in field.name for word in SECRET_WORDS)]


def download_token(export):
    return signing.dumps({"export": export.pk}, salt=SIGNING_SALT)


def check_download_token(export, token):
    try:
        data = signing.loads(token or "", salt=SIGNING_SALT, max_age=settings.BACKUP_EXPORT_LINK_HOURS * 3600)
    except signing.BadSignature:
        return False
    return data.get("export") == export.pk


def download_url(export):
    return f"{settings.SITE_URL}{reverse('data_export_download', args=[export.pk])}?token={download_token(export)}"


def _write_array(archive, name, rows, on_row=None):
    with archive.open(name, "w", force_zip64=True) as handle:
        handle.write(b"[")
        for index, row in enumerate(rows):
            handle.write((",\n" if index else "\n").encode() + json.dumps(row, cls=DjangoJSONEncoder).encode())
            if on_row:
                on_row()
        handle.write(b"\n]\n")


@shared_task(name="backups.tasks.run_export", acks_late=True, ignore_result=True)
def run_export(export_id):
    export = claim(DataExport, export_id)
    if export is None:
        return
    connection.set_schema_to_public()
    report = Reporter(export)
    try:
        build(export, report)
    except Exception as exc:
        log.exception("export %s failed", export_id)
        fail(export, f"{type(exc).__name__}: {exc}")
        return
    finally:
        storage.remove_work_dir(work_name(export))
        connection.set_schema_to_public()
    export.refresh_from_db()
    publish(export)
    owners = Membership.objects.filter(tenant=export.tenant).select_related("user")
    for membership in owners:
        if can_export_data(membership.role):
            send_email.delay(to=membership.user.email, subject="[Switchboard] Your data export is ready",
                             body=f"The export of {export.tenant.name} is ready. Download it within "
                                  f"{settings.BACKUP_EXPORT_LINK_HOURS} hours (you will be asked to log in):\n\n"
                                  f"{download_url(export)}\n")


def build(export, report):
    tenant = export.tenant
    work = storage.work_dir(work_name(export))
    path = work / "export.zip"
    models = [model for label in TENANT_DATA_APPS for model in apps.get_app_config(label).get_models()]
    with tenant_context(tenant):
        totals = {model: model.objects.count() for model in models}
    total = sum(totals.values()) + 1
    done = 0

    def counted():
        nonlocal done
        done += 1
        if done % 500 == 0:
            report(5 + 80 * done / total, "Writing records")

    report(2, "Writing records")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        archive.writestr("workspace.json", json.dumps(_workspace(tenant), cls=DjangoJSONEncoder, indent=1))
        with tenant_context(tenant):
            for model in models:
                names = [field.attname for field in exported_fields(model)]
                rows = model.objects.order_by("pk").values(*names).iterator(chunk_size=2000)
                _write_array(archive, f"{model._meta.app_label}/{model._meta.model_name}.json", rows, counted)
        connection.set_schema_to_public()
        audit_rows = AuditLog.objects.filter(tenant=tenant).order_by("pk").values(
            "created_at", "action", "target_type", "target_id", "before", "after", "actor__email", "actor_key",
            "ip").iterator()
        _write_array(archive, "audit.json", audit_rows)
        report(85, "Adding media files")
        media = contents.media_dir(tenant.schema_name)
        if media.is_dir():
            for dirpath, _, filenames in os.walk(media):
                for filename in sorted(filenames):
                    file_path = Path(dirpath) / filename
                    name = f"media/{file_path.relative_to(media).as_posix()}"
                    with open(file_path, "rb") as f:
                        encrypted = f.read(len(crypto.FILE_MAGIC)) == crypto.FILE_MAGIC
                    if encrypted:  # the export is for the tenant to read: as they sent or received it
                        archive.writestr(name, crypto.open_bytes(file_path.read_bytes()),
                                         compress_type=zipfile.ZIP_STORED)
                    else:
                        archive.write(file_path, name, compress_type=zipfile.ZIP_STORED)
    report(95, "Storing")
    store = storage.store()
    name = store.put_file(path, f"exports/{tenant.pk}/{export.pk}-{timezone.now():%Y%m%dT%H%M%SZ}.zip")
    DataExport.objects.filter(pk=export.pk).update(
        storage_name=name, size=store.size(name), status=Status.SUCCEEDED, progress=100, stage="Ready",
        finished_at=timezone.now(), expires_at=timezone.now() + timedelta(hours=settings.BACKUP_EXPORT_LINK_HOURS))


def _workspace(tenant):
    return {
        "exported_at": timezone.now(),
        "tenant": {"name": tenant.name, "slug": tenant.slug, "timezone": tenant.timezone,
                   "webhook_url": tenant.webhook_url, "contact_phone": tenant.contact_phone,
                   "plan": tenant.plan.name if tenant.plan_id else None, "created_at": tenant.created_at},
        "members": [{"email": m.user.email, "name": m.user.full_name, "role": m.role, "since": m.created_at}
                    for m in Membership.objects.filter(tenant=tenant).select_related("user")],
    }


def delete_expired(now=None):
    """Exports past their link's life are deleted from the storage."""
    now = now or timezone.now()
    store = None
    deleted = 0
    for export in DataExport.objects.filter(status=Status.SUCCEEDED, deleted_at__isnull=True, expires_at__lt=now):
        store = store or storage.store()
        store.delete(export.storage_name)
        DataExport.objects.filter(pk=export.pk).update(deleted_at=now)
        deleted += 1
    return deleted
