"""Making backups and proving them by restore: the work `backups.tasks.run_backup` does in a worker.

A backup is made in BACKUP_DIR/.work/backup-<id>/ (dumps, then the archive), moved or uploaded to the storage
under its final name only when complete, and then verified: the stored file is read back, its sha256 checked,
decrypted, unpacked and restored into a scratch database (a full backup) or a scratch schema (a tenant backup), and
every table's row count and the migration state compared with the manifest. Only then does it count as verified.
"""
import contextlib
import errno
import logging
import os
import socket
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.errors import DomainError

from . import archive, contents, crypto, notify, pg, storage, wal
from .errors import BackupError
from .models import Backup, Status
from .progress import Reporter, publish

log = logging.getLogger(__name__)


def worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(model, pk):
    """The row, now `running` in this process; None when another process has it or it is already over. A row
    still `running` here was redelivered after its worker died (acks_late): it fails, and the work is not redone."""
    now = timezone.now()
    if model.objects.filter(pk=pk, status=Status.QUEUED).update(status=Status.RUNNING, started_at=now,
                                                                 heartbeat_at=now, worker=worker_id()):
        return model.objects.get(pk=pk)
    row = model.objects.filter(pk=pk).first()
    if row is not None and row.status == Status.RUNNING and worker_is_dead(row):
        fail(row, "The worker doing this died midway (killed or out of memory); nothing partial was kept.")
    return None


def worker_is_dead(row, now=None):
    """A running row's process is gone: its pid no longer runs on this host, or its heartbeat went stale."""
    host, _, pid = (row.worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    heartbeat = row.heartbeat_at or row.started_at or row.created_at
    return ((now or timezone.now()) - heartbeat).total_seconds() > settings.BACKUP_STALE_SECONDS


def fail(row, message):
    """End the work as failed, remove what it left in progress, and (a backup or a restore) fire its alert."""
    now = timezone.now()
    type(row).objects.filter(pk=row.pk).update(status=Status.FAILED, error=message[:5000], finished_at=now,
                                                heartbeat_at=now)
    row.refresh_from_db()
    storage.remove_work_dir(work_name(row))
    publish(row)
    if isinstance(row, Backup) or type(row).__name__ == "Restore":
        notify.check_alerts_soon()
    return row


def work_name(row):
    return f"{type(row).__name__.lower()}-{row.pk}"


def storage_name(backup):
    stamp = (backup.started_at or timezone.now()).strftime("%Y%m%dT%H%M%SZ")
    if backup.kind == Backup.Kind.TENANT:
        return f"backups/tenant/{backup.tenant_schema}/{stamp}-{backup.pk}{archive.SUFFIX}"
    if backup.kind == Backup.Kind.BASE:
        return f"base/{stamp}-{backup.pk}{archive.SUFFIX}"
    return f"backups/full/{stamp}-{backup.pk}{archive.SUFFIX}"


# --- the task ----------------------------------------------------------------------------------------------------

@shared_task(name="backups.tasks.run_backup", acks_late=True, ignore_result=True)
def run_backup(backup_id, verify=True):
    backup = claim(Backup, backup_id)
    if backup is None:
        return
    connection.set_schema_to_public()
    report = Reporter(backup)
    try:
        sealing = make(backup, report.span(0, 60 if verify else 100))
    except Exception as exc:
        log.exception("backup %s failed", backup_id)
        fail(backup, _reason(exc))
        return
    if verify:
        try:
            verify_backup(backup, report.span(60, 100), extra_identities=[sealing.verify_identity])
        except Exception as exc:
            log.exception("verification of backup %s failed", backup_id)
            Backup.objects.filter(pk=backup.pk).update(verification_error=_reason(exc)[:5000])
            notify.check_alerts_soon()
    Backup.objects.filter(pk=backup.pk).update(progress=100, stage="Done", finished_at=timezone.now())
    backup.refresh_from_db()
    publish(backup)


def _reason(exc):
    if isinstance(exc, DomainError):
        return exc.message
    if _disk_full(exc):
        return (f"The disk is full ({exc.strerror}) under {settings.BACKUP_DIR}: the backup stopped midway and "
                "nothing partial was kept. Free space (or clean up old backups) and back up again.")
    return f"{type(exc).__name__}: {exc}"


def _disk_full(exc):
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def make(backup, report, database=None):
    """Make, store and record the backup (of `database`, by default Django's); returns its Sealing (whose identity
    verifies it)."""
    store = storage.store()
    work = storage.work_dir(work_name(backup))
    sealing = crypto.sealing_for_new_file(store)
    database = database or pg.Database.from_settings()
    report(1, "Reading the database")
    with contextlib.ExitStack() as open_until_written:
        if backup.kind == Backup.Kind.TENANT:
            manifest, members = _tenant_parts(backup, database, work, report, open_until_written)
        elif backup.kind == Backup.Kind.FULL:
            manifest, members = _full_parts(database, work, report)
        else:
            manifest, members = wal.base_backup_parts(database, work, report)
        manifest.update(compression="zstd" if backup.compress else "none", encryption=sealing.mode,
                        versions=contents.versions(_server_version(database), pg.tool("pg_dump", database)))
        total = sum(_size(local) for local, _ in members) or 1
        report(50, "Compressing and encrypting")
        path = work / "backup.part"
        with archive.ArchiveWriter(path, sealing, compress=backup.compress, level=settings.BACKUP_ZSTD_LEVEL,
                                   on_input=lambda done: report(50 + 45 * done / total)) as writer:
            writer.add_bytes(_json_bytes(manifest), "manifest.json")
            for local, arcname in members:
                if isinstance(local, pg.DumpInProgress):
                    report(stage="Compressing and encrypting the dump")
                    local = local.wait()
                if os.path.isdir(local):
                    writer.add_tree(local, arcname)
                else:
                    writer.add_file(local, arcname)
    report(96, "Storing")
    name = storage_name(backup)
    try:
        if sealing.wrapped_key:
            store.write_bytes(name + crypto.KEY_SIDECAR_SUFFIX, sealing.wrapped_key)
        stored = store.put_file(path, name)
    except BaseException:
        # A storage that fills up or fails midway keeps neither the key beside the backup nor a part of it.
        for leftover in (name + crypto.KEY_SIDECAR_SUFFIX, name):
            with contextlib.suppress(Exception):
                store.delete(leftover)
        raise
    Backup.objects.filter(pk=backup.pk).update(storage_name=stored, size=writer.size, sha256=writer.sha256,
                                               manifest=manifest, encryption=sealing.mode,
                                               status=Status.SUCCEEDED, finished_at=timezone.now())
    backup.refresh_from_db()
    storage.remove_work_dir(work_name(backup))
    report(100, "Stored")
    return sealing


def _size(local):
    if isinstance(local, pg.DumpInProgress):
        return local.estimated_bytes
    return os.path.getsize(local) if os.path.isfile(local) else contents.tree_stats(local)["bytes"]


def _json_bytes(data):
    import json  # here: only the manifest is serialised in this module

    return json.dumps(data, indent=1, default=str).encode()


def _server_version(database):
    with database.connect(autocommit=True) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def _tenant_parts(backup, database, work, report, open_until_written):
    """The parts of a tenant backup. Its pg_dump runs beside the archiving of the files (media first, the dump
    last), importing a snapshot that `open_until_written` keeps open until the archive is written."""
    schema = backup.tenant_schema
    snap = open_until_written.enter_context(pg.Snapshot(database))
    tables = pg.schemas_and_tables(snap.cursor).get(schema)
    if tables is None:
        raise DomainError(BackupError.TENANT_HAS_NO_SCHEMA, f"The schema {schema} does not exist.")
    report(5, "Dumping the schema")
    dump = open_until_written.enter_context(pg.DumpInProgress(database, work / "schema.dump", [schema],
                                                              snapshot_id=snap.id))
    report(8, "Counting rows")
    counts = snap.count_rows([(schema, table) for table in tables])
    migrations = pg.migration_state(snap.cursor, schema)
    public_rows = contents.read_public_rows(snap.cursor, backup.tenant_id)
    ids = contents.session_ids(snap.cursor, schema)
    contents.write_json(work / "public.json", public_rows)
    store_files = contents.store_files(schema, ids)
    media = contents.media_dir(schema)
    manifest = contents.new_manifest(
        "tenant",
        tenant={"id": backup.tenant_id, "schema": schema, "name": backup.tenant_name,
                "slug": public_rows[contents.Tenant._meta.db_table][0]["slug"]
                if public_rows[contents.Tenant._meta.db_table] else ""},
        database={"name": database.name, "dumps": [{"file": "db/schema.dump", "schemas": [schema]}],
                  "schemas": {schema: {"tables": {t: counts[f"{schema}.{t}"] for t in tables},
                                       "migrations": migrations}}},
        public_rows={table: len(rows) for table, rows in public_rows.items()},
        files={"store": {"count": len(store_files), "bytes": sum(os.path.getsize(p) for _, p in store_files)},
               "media": contents.tree_stats(media)},
    )
    members = [(media, "media")] if media.is_dir() else []
    members += [(work / "public.json", "public.json"), *[(Path(path), arcname) for arcname, path in store_files],
                (dump, "db/schema.dump")]
    return manifest, members


def dump_database(database, work, report):
    """Every schema of `database` into custom-format dumps under `work`/db, in lock-bounded batches of one snapshot.
    Returns (dumps [{"file", "schemas"}], {schema: {"tables": {table: rows}, "migrations": [...]}})."""
    (Path(work) / "db").mkdir(exist_ok=True)
    dumps = []
    with pg.Snapshot(database) as snap:
        by_schema = pg.schemas_and_tables(snap.cursor)
        budget = pg.lock_budget(snap.cursor)
        groups = pg.batches(by_schema, budget)
        tables = [(schema, table) for schema, names in by_schema.items() for table in names]
        report(2, f"Counting rows of {len(tables)} tables in {len(by_schema)} schemas")
        per_query = min(pg.COUNT_TABLES_PER_QUERY, budget)  # each count query locks its tables too
        counts = snap.count_rows(tables, on_progress=lambda done, total: report(2 + 8 * done / total),
                                 per_query=per_query)
        with_migrations = [schema for schema, names in by_schema.items() if "django_migrations" in names]
        migrations = pg.migration_states(database, with_migrations, snapshot_id=snap.id, per_query=per_query)
        for index, group in enumerate(groups):
            report(10 + 40 * index / len(groups), f"Dumping schemas ({index + 1}/{len(groups)} batches)")
            name = f"db/{index:05d}.dump"
            pg.dump(database, Path(work) / name, group, snapshot_id=snap.id)
            dumps.append({"file": name, "schemas": group})
    schemas = {schema: {"tables": {t: counts[f"{schema}.{t}"] for t in names}, "migrations": migrations.get(schema, [])}
               for schema, names in by_schema.items()}
    return dumps, schemas


def _full_parts(database, work, report):
    dumps, schemas = dump_database(database, work, report)
    store_dir, media_root = Path(settings.WHATSAPP_STORE_DIR), Path(settings.MEDIA_ROOT)
    manifest = contents.new_manifest(
        "full",
        database={"name": database.name, "dumps": dumps, "schemas": schemas},
        files={"store": contents.tree_stats(store_dir), "media": contents.tree_stats(media_root)},
    )
    members = [(work / dump["file"], dump["file"]) for dump in dumps]
    for local, arcname in ((store_dir, "store"), (media_root, "media")):
        if local.is_dir():
            members.append((local, arcname))
    return manifest, members


# --- verification ------------------------------------------------------------------------------------------------

def open_backup(backup, into, *, identity=None, extra_identities=(), report=None, store=None):
    """Fetch the stored file, check its sha256, decrypt and unpack it into `into`; returns the manifest."""
    store = store or storage.store()
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    path = store.fetch(backup.storage_name, into.parent)
    identities = crypto.identities_for_reading(store, given=identity, extra=[i for i in extra_identities if i],
                                               sidecar_name=backup.storage_name + crypto.KEY_SIDECAR_SUFFIX)
    size = os.path.getsize(path) or 1
    archive.extract(path, into, identities, expected_sha256=backup.sha256 or None, compressed=backup.compress,
                    on_bytes=(lambda done: report(100 * done / size, "Decrypting")) if report else None)
    if not store.is_local:
        os.unlink(path)
    return contents.read_json(into / "manifest.json")


def compare_schema(database, schema, expected, restored_as=None):
    """Differences between a restored schema and its manifest entry: missing tables, row counts, migrations."""
    restored_as = restored_as or schema
    with database.connect(autocommit=True) as conn, conn.cursor() as cursor:
        tables = pg.schemas_and_tables(cursor).get(restored_as, [])
        migrations = pg.migration_state(cursor, restored_as)
    problems = []
    missing = sorted(set(expected["tables"]) - set(tables))
    if missing:
        problems.append(f"{schema}: tables missing after restore: {', '.join(missing[:10])}")
    present = [(restored_as, table) for table in expected["tables"] if table in tables]
    counts = pg.count_rows(database, present)
    for _, table in present:
        got, wanted = counts[f"{restored_as}.{table}"], expected["tables"][table]
        if got != wanted:
            problems.append(f"{schema}.{table}: {got} rows restored, {wanted} in the manifest")
    if migrations != expected.get("migrations", []):
        problems.append(f"{schema}: migration state differs from the manifest")
    return problems


def compare_files(unpacked, manifest):
    problems = []
    for part in ("store", "media"):
        expected = manifest.get("files", {}).get(part)
        if expected is None:
            continue
        got = contents.tree_stats(Path(unpacked) / part)
        if got != expected:
            problems.append(f"{part} files: {got['count']} files / {got['bytes']} bytes unpacked, "
                            f"{expected['count']} / {expected['bytes']} in the manifest")
    return problems


def raise_if(problems):
    if problems:
        raise DomainError(BackupError.MANIFEST_MISMATCH, "The restored data differs from the manifest: "
                          + "; ".join(problems[:5]), {"problems": problems[:100]})


def verify_backup(backup, report, *, identity=None, extra_identities=()):
    """Restore the stored backup into scratch space and compare it with its manifest; sets verified_at."""
    name = f"verify-{backup.pk}"
    work = storage.work_dir(name)
    database = pg.Database.from_settings()
    try:
        report(0, "Verifying: reading the stored file back")
        manifest = open_backup(backup, work / "x", identity=identity, extra_identities=extra_identities,
                               report=lambda pct, stage=None: report(pct * 0.3, stage))
        problems = compare_files(work / "x", manifest)
        if backup.kind == Backup.Kind.BASE:
            if not (work / "x" / "base.tar").is_file():
                problems.append("base.tar is missing")
        elif backup.kind == Backup.Kind.TENANT:
            report(30, "Verifying: restoring into a scratch schema")
            schema = manifest["tenant"]["schema"]
            scratch = f"v_{backup.pk}_{os.getpid()}"[:63]
            try:
                pg.restore_as(database, work / "x" / "db" / "schema.dump", schema, scratch)
                report(80, "Verifying: comparing with the manifest")
                problems += compare_schema(database, schema, manifest["database"]["schemas"][schema], scratch)
            finally:
                with database.connect(autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {pg.quote_ident(scratch)} CASCADE")
        else:
            scratch_name = f"{database.name[:40]}_verify_{backup.pk}"
            pg.drop_database(database, scratch_name)
            scratch = pg.create_database(database, scratch_name)
            try:
                restore_full_database(scratch, work / "x", manifest,
                                      report=lambda pct, stage=None: report(30 + pct * 0.5, stage))
                report(80, "Verifying: comparing with the manifest")
                for schema, expected in manifest["database"]["schemas"].items():
                    problems += compare_schema(scratch, schema, expected)
            finally:
                pg.drop_database(database, scratch_name)
        raise_if(problems)
        Backup.objects.filter(pk=backup.pk).update(verified_at=timezone.now(), verification_error="")
        backup.refresh_from_db()
        report(100, "Verified")
    finally:
        storage.remove_work_dir(name)


def restore_full_database(target, unpacked, manifest, report=None):
    """Restore every dump of a full backup into the (empty) database `target`: public first, then the rest."""
    with target.connect(autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
    dumps = manifest["database"]["dumps"]
    for index, dump in enumerate(dumps):
        if report:
            report(100 * index / len(dumps), f"Restoring schemas ({index + 1}/{len(dumps)} batches)")
        pg.restore(target, Path(unpacked) / dump["file"])
