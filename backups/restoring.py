"""Restoring one tenant from a backup without touching the others: `backups.tasks.run_restore` in a worker.

In place: the backup is read back (sha256, decryption: a refused file changes nothing), its schema restored into a
new schema `<schema>_r<restore id>` and compared with the manifest (row counts per table, migration state). Only
then are the tenant's sessions stopped, and in one transaction the live schema is renamed
`<schema>_pre_<time>` and the restored one takes its name. The devices' keys (session store files) and the media
come back with it, the replaced ones kept aside; the sessions that were running in the backup are started again
and reconnect without a scan. The replaced schema and files are dropped after BACKUP_RESTORE_GRACE_DAYS.

Public-schema rows: a tenant that still exists keeps its current access, billing and audit history (a restore never
re-grants a removed member or revives a revoked key); a tenant that was deleted gets its rows back from the backup.

As a new tenant (staging, an investigation): the same restore under a new schema and a new tenant row, its
members copied, no API keys, every session stopped (the original's devices may still be running: one device never
runs in two clients).
"""
import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone
from django.utils.text import slugify
from django_tenants.utils import schema_context, tenant_context

from accounts.models import Membership, User
from audit import actions as audit
from billing import actions as billing_actions
from core.errors import DomainError
from tenants.models import Domain, Tenant
from whatsapp.host import commands, leases
from whatsapp.sessions import actions as session_actions
from whatsapp.sessions.models import WhatsAppSession

from . import contents, pg, storage
from .errors import BackupError
from .models import Restore, Status
from .progress import Reporter, publish
from .runner import claim, compare_files, compare_schema, fail, open_backup, raise_if, work_name

log = logging.getLogger(__name__)

IDENTITY_CACHE_SECONDS = 3600
PRE_DIR = ".pre"


def identity_key(restore_id):
    return f"backups:restore-identity:{restore_id}"


def keep_identity(restore_id, identity):
    """The identity given with a restore request waits for the worker in the cache (an hour at most), never in
    the database; the worker takes it out."""
    if identity:
        cache.set(identity_key(restore_id), identity, IDENTITY_CACHE_SECONDS)


def take_identity(restore_id):
    identity = cache.get(identity_key(restore_id))
    cache.delete(identity_key(restore_id))
    return identity


@shared_task(name="backups.tasks.run_restore", acks_late=True, ignore_result=True)
def run_restore(restore_id):
    identity = take_identity(restore_id)
    restore = claim(Restore, restore_id)
    if restore is None:
        return
    connection.set_schema_to_public()
    report = Reporter(restore)
    try:
        if restore.mode == Restore.Mode.IN_PLACE:
            restore_in_place(restore, identity, report)
        else:
            restore_as_new_tenant(restore, identity, report)
    except Exception as exc:
        log.exception("restore %s failed", restore_id)
        fail(restore, exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}")
        return
    finally:
        storage.remove_work_dir(work_name(restore))
        connection.set_schema_to_public()
    Restore.objects.filter(pk=restore.pk).update(status=Status.SUCCEEDED, progress=100, stage="Done",
                                                 finished_at=timezone.now())
    restore.refresh_from_db()
    publish(restore)


def check_migrations_known(manifest_schema):
    """A backup made by newer code (migrations this code does not have) is refused before anything changes."""
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    unknown = [f"{app}.{name}" for app, name in manifest_schema.get("migrations", []) if (app, name) not in known]
    if unknown:
        raise DomainError(BackupError.NEWER_THAN_CODE, "This backup was made by a newer version of Switchboard "
                          "(migrations this code does not have); deploy that version first.", {"unknown": unknown[:20]})


def _restore_verified(restore, identity, report, target_schema):
    """Read the backup, restore its schema as `target_schema`, compare with the manifest. Returns
    (manifest, unpacked folder, public rows). Nothing live has changed when this raises."""
    backup = restore.backup
    if backup is None or not backup.is_restorable:
        raise DomainError(BackupError.NOT_RESTORABLE, "That backup has no stored file to restore from.")
    work = storage.work_dir(work_name(restore))
    report(1, "Reading the backup")
    manifest = open_backup(backup, work / "x", identity=identity, report=lambda pct, stage=None: report(pct * 0.3))
    if manifest.get("kind") != "tenant":
        raise DomainError(BackupError.FULL_RESTORE_OFFLINE, "Only a tenant backup restores one tenant.")
    schema = manifest["tenant"]["schema"]
    expected = manifest["database"]["schemas"][schema]
    check_migrations_known(expected)
    database = pg.Database.from_settings()
    drop_schema(target_schema)
    report(30, "Restoring into a new schema")
    try:
        pg.restore_as(database, work / "x" / "db" / "schema.dump", schema, target_schema)
        report(60, "Comparing with the manifest")
        raise_if(compare_schema(database, schema, expected, target_schema) + compare_files(work / "x", manifest))
    except Exception:
        drop_schema(target_schema)
        raise
    return manifest, work / "x", contents.read_json(work / "x" / "public.json")


def drop_schema(name):
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {pg.quote_ident(name)} CASCADE")


def _sessions_to_restart(schema):
    """Sessions the backup had running: they are held stopped through the swap, then started."""
    with schema_context(schema):
        wanted = list(WhatsAppSession.objects.filter(should_run=True).values_list("pk", flat=True))
        WhatsAppSession.objects.update(should_run=False, status=WhatsAppSession.Status.STOPPED,
                                       status_detail="Restored from a backup.", qr_code="", pair_code="")
    return wanted


def stop_sessions(tenant, acting_user):
    """Stop the tenant's running sessions and give the session hosts time to let go of them (their clients
    write the store files the restore replaces)."""
    with tenant_context(tenant):
        running = list(WhatsAppSession.objects.filter(should_run=True))
        for session in running:
            session_actions.stop_session(tenant, session, acting_user=acting_user)
    connection.set_schema_to_public()
    if running:
        commands.wake_hosts()
        for session in running:
            leases.want_stopped(tenant.schema_name, session.pk)
        time.sleep(settings.BACKUP_SESSION_STOP_WAIT_SECONDS)
    return [session.pk for session in running]


def start_sessions(tenant, session_ids, acting_user):
    started, refused = [], {}
    with tenant_context(tenant):
        for session in WhatsAppSession.objects.filter(pk__in=session_ids):
            try:
                session_actions.start_session(tenant, session, acting_user=acting_user)
                started.append(session.pk)
            except DomainError as exc:
                refused[session.name] = exc.message
    connection.set_schema_to_public()
    return started, refused


def _put_files(unpacked, schema, *, aside=None, live_ids=()):
    """Restored store files and media in place for `schema`; what was there goes to `aside` (a name) first."""
    store_dir = Path(settings.WHATSAPP_STORE_DIR)
    store_dir.mkdir(parents=True, exist_ok=True)
    if aside:
        kept = store_dir / PRE_DIR / aside
        for _, path in contents.store_files(schema, live_ids):
            kept.mkdir(parents=True, exist_ok=True)
            shutil.move(path, kept / os.path.basename(path))
        media = contents.media_dir(schema)
        if media.exists():
            shutil.move(str(media), str(media.with_name(aside)))
    restored_store = Path(unpacked) / "store"
    if restored_store.is_dir():
        for provider_dir in restored_store.iterdir():
            for member in provider_dir.iterdir():
                shutil.copyfile(member, contents.store_target(provider_dir.name, member.name, schema))
                os.chmod(contents.store_target(provider_dir.name, member.name, schema), 0o600)
    restored_media = Path(unpacked) / "media"
    if restored_media.is_dir():
        target = contents.media_dir(schema)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(restored_media), str(target))


def restore_in_place(restore, identity, report):
    staging = f"{restore.backup.tenant_schema}_r{restore.pk}"[:63]
    manifest, unpacked, public_rows = _restore_verified(restore, identity, report, staging)
    schema = manifest["tenant"]["schema"]
    tenant = Tenant.objects.filter(pk=manifest["tenant"]["id"], schema_name=schema).first()
    recreated = tenant is None
    report(70, "Stopping the tenant's sessions")
    live_ids = []
    if not recreated:
        stop_sessions(tenant, restore.created_by)
        with tenant_context(tenant):
            live_ids = list(WhatsAppSession.objects.values_list("pk", flat=True))
        connection.set_schema_to_public()
    run_after = _sessions_to_restart(staging)
    previous = f"{schema}_pre_{timezone.now():%Y%m%d%H%M%S}"[:63]
    report(80, "Swapping the restored schema in")
    with transaction.atomic():
        with connection.cursor() as cursor:
            if not recreated or _schema_exists(cursor, schema):
                cursor.execute(f"ALTER SCHEMA {pg.quote_ident(schema)} RENAME TO {pg.quote_ident(previous)}")
            else:
                previous = ""
            cursor.execute(f"ALTER SCHEMA {pg.quote_ident(staging)} RENAME TO {pg.quote_ident(schema)}")
            if recreated:
                _insert_public_rows(cursor, public_rows)
        tenant = Tenant.objects.get(schema_name=schema)
        Restore.objects.filter(pk=restore.pk).update(tenant=tenant, previous_schema=previous)
        audit.record("backups.tenant_restored", actor=restore.created_by, target=restore, tenant=tenant,
                     after={"backup": restore.backup_id, "previous_schema": previous, "recreated": recreated})
    _put_files(unpacked, schema, aside=previous or None, live_ids=live_ids)
    report(90, "Starting the sessions")
    started, refused = start_sessions(tenant, run_after, restore.created_by)
    Restore.objects.filter(pk=restore.pk).update(details={
        "recreated": recreated, "sessions_started": started, "sessions_not_started": refused,
        "tables": len(manifest["database"]["schemas"][schema]["tables"])})


def _schema_exists(cursor, name):
    cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])
    return cursor.fetchone() is not None


def _insert_public_rows(cursor, public_rows):
    """A deleted tenant's public rows back as they were (users matched by email keep their current row)."""
    users = public_rows.get(User._meta.db_table, [])
    existing = dict(User.objects.filter(email__in=[u["email"] for u in users]).values_list("email", "pk"))
    fresh_users = [u for u in users if u["email"] not in existing]
    contents.insert_rows(cursor, User._meta.db_table, fresh_users)
    remap = {u["id"]: existing[u["email"]] for u in users if u["email"] in existing}
    for table, rows in public_rows.items():
        if table == User._meta.db_table:
            continue
        if table == contents._email_table():
            rows = [row for row in rows if row["user_id"] not in remap]
        if table == Membership._meta.db_table:
            rows = [{**row, "user_id": remap.get(row["user_id"], row["user_id"])} for row in rows]
        contents.insert_rows(cursor, table, rows)


def restore_as_new_tenant(restore, identity, report):
    new_schema = Tenant.new_schema_name()
    manifest, unpacked, public_rows = _restore_verified(restore, identity, report, new_schema)
    original = (public_rows.get(Tenant._meta.db_table) or [{}])[0]
    _sessions_to_restart(new_schema)  # all held stopped: the original's devices may still be running
    report(80, "Creating the tenant")
    now = timezone.now()
    name = restore.details.get("name") or f"{original.get('name') or manifest['tenant']['name']} (restored " \
                                          f"{now:%Y-%m-%d %H:%M})"
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(
                name=name[:120], slug=_free_slug(restore.details.get("slug") or f"{original.get('slug', 'tenant')}-r"
                                                 f"{restore.pk}"),
                schema_name=new_schema, status=Tenant.Status.ACTIVE, plan_id=original.get("plan_id"),
                timezone=original.get("timezone") or "UTC", contact_phone=original.get("contact_phone") or "",
                approved_at=now, trial_ends_at=now + timedelta(days=settings.TRIAL_PERIOD_DAYS))
            Domain.objects.create(tenant=tenant, domain=tenant.subdomain, is_primary=True)
            billing_actions.start_trial(tenant)
            emails = {row["id"]: row["email"] for row in public_rows.get(User._meta.db_table, [])}
            users = {user.email: user for user in User.objects.filter(email__in=emails.values())}
            for row in public_rows.get(Membership._meta.db_table, []):
                user = users.get(emails.get(row["user_id"]))
                if user is not None:
                    Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": row["role"]})
            Restore.objects.filter(pk=restore.pk).update(tenant=tenant)
            audit.record("backups.tenant_restored_as_new", actor=restore.created_by, target=restore, tenant=tenant,
                         after={"backup": restore.backup_id, "schema": new_schema})
    except Exception:
        drop_schema(new_schema)
        raise
    _put_files(unpacked, new_schema)
    Restore.objects.filter(pk=restore.pk).update(details={**restore.details, "new_tenant_id": tenant.pk,
                                                          "schema": new_schema})


def _free_slug(wanted):
    base = slugify(wanted)[:55] or "restored"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def drop_expired_previous_schemas(now=None):
    """Replaced schemas (and the files kept aside with them) go BACKUP_RESTORE_GRACE_DAYS after the restore."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BACKUP_RESTORE_GRACE_DAYS)
    dropped = []
    for restore in Restore.objects.filter(status=Status.SUCCEEDED, finished_at__lt=cutoff,
                                          previous_dropped_at__isnull=True).exclude(previous_schema=""):
        drop_schema(restore.previous_schema)
        shutil.rmtree(Path(settings.WHATSAPP_STORE_DIR) / PRE_DIR / restore.previous_schema, ignore_errors=True)
        shutil.rmtree(contents.media_dir(restore.previous_schema), ignore_errors=True)
        Restore.objects.filter(pk=restore.pk).update(previous_dropped_at=timezone.now())
        dropped.append(restore.previous_schema)
    return dropped
