"""What a backup holds besides the dumps: a tenant's rows in the public schema, its session store files (the linked
devices' keys: without them every number must be scanned again) and its media; and the manifest that describes it.

Public rows are read as JSON (row_to_json) inside the backup's snapshot and written back with
json_populate_record, so a column added since the backup comes back as its default or NULL instead of failing.
"""
import contextlib
import json
import os
import platform
import shutil
from pathlib import Path

import django
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ApiKey, Membership, User
from audit.models import AuditLog
from billing.models import Customer, Payment, Subscription
from tenants.models import Domain, Notification, Tenant
from whatsapp.providers import neonize as neonize_provider
from whatsapp.providers import simulator as simulator_provider
from whatsapp.sessions.models import WhatsAppSession

from .models import DataExport
from .pg import quote_ident
from .storage import store

MANIFEST_FORMAT = 1
STORE_PROVIDERS = {"neonize": neonize_provider.store_path, "simulator": simulator_provider.store_path}
STORE_FILE_SUFFIXES = ("", "-journal", "-wal", "-shm")  # sqlite's companions of a neonize store


def _email_table():
    from allauth.account.models import EmailAddress  # here: allauth's models load after the app registry

    return EmailAddress._meta.db_table


def tenant_public_tables():
    """(table, WHERE clause on %(tenant)s) of every public row that belongs to one tenant, in restore order."""
    members = f"SELECT user_id FROM {Membership._meta.db_table} WHERE tenant_id = %(tenant)s"
    return [
        (User._meta.db_table, f"id IN ({members})"),
        (_email_table(), f"user_id IN ({members})"),
        (Tenant._meta.db_table, "id = %(tenant)s"),
        (Domain._meta.db_table, "tenant_id = %(tenant)s"),
        (Membership._meta.db_table, "tenant_id = %(tenant)s"),
        (ApiKey._meta.db_table, "tenant_id = %(tenant)s"),
        (Customer._meta.db_table, "tenant_id = %(tenant)s"),
        (Subscription._meta.db_table, "tenant_id = %(tenant)s"),
        (Payment._meta.db_table, "tenant_id = %(tenant)s"),
        (Notification._meta.db_table, "tenant_id = %(tenant)s"),
        (AuditLog._meta.db_table, "tenant_id = %(tenant)s"),
    ]


def read_public_rows(cursor, tenant_id):
    """{table: [row as a dict, …]} of the tenant's public rows (cursor: inside the backup's snapshot)."""
    rows = {}
    for table, where in tenant_public_tables():
        cursor.execute(f"SELECT row_to_json(r) FROM {quote_ident(table)} r WHERE {where} ORDER BY r.id",
                       {"tenant": tenant_id})
        rows[table] = [row[0] for row in cursor.fetchall()]
    return rows


def insert_rows(cursor, table, rows):
    """Insert rows (dicts from row_to_json) as they were; rows whose key already exists are left alone."""
    for row in rows:
        cursor.execute(f"INSERT INTO {quote_ident(table)} SELECT * FROM "
                       f"json_populate_record(NULL::{quote_ident(table)}, %s::json) ON CONFLICT DO NOTHING",
                       [json.dumps(row)])


def session_ids(cursor, schema):
    table = WhatsAppSession._meta.db_table
    cursor.execute("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", [schema, table])
    if cursor.fetchone() is None:
        return []
    cursor.execute(f"SELECT id FROM {quote_ident(schema)}.{quote_ident(table)} ORDER BY id")
    return [row[0] for row in cursor.fetchall()]


def store_files(schema, ids, store_dir=None):
    """[(archive name, path)] of the device store files of the tenant's sessions, whichever provider wrote them.
    Archive names carry the session id, not the schema, so a restore under another schema finds them."""
    store_dir = store_dir or settings.WHATSAPP_STORE_DIR
    found = []
    for session_id in ids:
        for provider, store_path in STORE_PROVIDERS.items():
            base = store_path(store_dir, f"{schema}:{session_id}")
            for suffix in STORE_FILE_SUFFIXES:
                if os.path.isfile(base + suffix):
                    found.append((f"store/{provider}/{session_id}{suffix}", base + suffix))
    return found


def store_target(provider, member_name, schema, store_dir=None):
    """Where the store file `store/<provider>/<session id><suffix>` of the archive goes for `schema`."""
    store_dir = store_dir or settings.WHATSAPP_STORE_DIR
    session_part = member_name
    suffix = ""
    for candidate in STORE_FILE_SUFFIXES[1:]:
        if session_part.endswith(candidate):
            session_part, suffix = session_part[:-len(candidate)], candidate
    return STORE_PROVIDERS[provider](store_dir, f"{schema}:{int(session_part)}") + suffix


def media_dir(schema):
    return Path(settings.MEDIA_ROOT) / schema


def tree_stats(root):
    count = size = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                count += 1
                size += os.path.getsize(path)
    return {"count": count, "bytes": size}


def versions(server_version, pg_dump_path):
    import subprocess  # here: only the manifest asks pg_dump its version

    try:
        pg_dump = subprocess.run([pg_dump_path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        pg_dump = ""
    return {"django": django.get_version(), "python": platform.python_version(), "postgres": server_version,
            "pg_dump": pg_dump, "code": _code_version()}


def _code_version():
    head = Path(settings.BASE_DIR) / ".git"
    try:
        if head.is_file():  # a worktree: .git names the real folder
            head = Path(head.read_text().split(":", 1)[1].strip())
        ref = (head / "HEAD").read_text().strip()
        if ref.startswith("ref:"):
            ref_path = head / ref.split(" ", 1)[1]
            if ref_path.exists():
                return ref_path.read_text().strip()[:12]
            return ref.split("/")[-1]
        return ref[:12]
    except (OSError, IndexError):
        return ""


def new_manifest(kind, **fields):
    return {"format": MANIFEST_FORMAT, "kind": kind, "created_at": timezone.now().isoformat(), **fields}


def write_json(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle, default=str)


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def move_aside(path, suffix):
    """Move an existing file or folder out of the way (to `<path><suffix>`); returns where it went, or None."""
    path = Path(path)
    if not path.exists():
        return None
    target = path.with_name(path.name + suffix)
    shutil.move(str(path), str(target))
    return target


def forget_tenant_files(sender, *, tenant, schema_name, **kwargs):
    """A deleted tenant's files go with it (tenants.signals.tenant_deleting): its sessions' device stores, its media
    and its data exports, removed once the deletion commits. Its backups stay, under the backup retention, as
    backups of a deleted tenant restorable by the platform team (they expire after BACKUP_RETENTION_DAYS)."""
    with connection.cursor() as cursor:
        stores = [path for _, path in store_files(schema_name, session_ids(cursor, schema_name))]
    exports = list(DataExport.objects.filter(tenant=tenant).exclude(storage_name="")
                   .filter(deleted_at__isnull=True).values_list("storage_name", flat=True))

    def remove():
        for path in stores:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if schema_name:
            shutil.rmtree(media_dir(schema_name), ignore_errors=True)
        for name in exports:
            with contextlib.suppress(FileNotFoundError):
                store().delete(name)

    transaction.on_commit(remove)
