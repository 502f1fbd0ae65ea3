"""Backups: a tenant of ~1 GB (message rows and media files) exported and restored by Switchboard, against a raw
`pg_dump -Fc -n` / `pg_restore` of the same schema (plus a plain tar of its media) in the same run; a full backup
over many tenant schemas; and the RPO of point-in-time recovery.

Everything runs on scratch Postgres clusters of the system's binaries started here (temporary folders, free ports),
never on the shared server. Parameters (environment):
  BACKUP_BENCH_MB (1024)            the tenant's size (0 skips it); BACKUP_BENCH_MEDIA_SHARE (0.5) of it media files
                                    (random bytes: incompressible), the rest message rows
  BACKUP_BENCH_RUNS (3)             export/restore and raw runs (medians)
  BACKUP_BENCH_SCHEMAS (1000)       tenant schemas of the full backup (0 skips it)
  BACKUP_BENCH_RPO_RUNS (3)         simulated machine losses (0 skips them); BACKUP_BENCH_ARCHIVE_TIMEOUT
                                    (settings' BACKUP_ARCHIVE_TIMEOUT_SECONDS) s, BACKUP_BENCH_SHIP_SECONDS
                                    (BACKUP_WAL_SHIP_SECONDS) s between WAL shipments
  BACKUP_BENCH_RPO_MOMENT (worst)   when the machine is lost: `worst` = at the last instant before a shipment
                                    would carry a segment that archive_timeout closed (the most it can lose at that
                                    tick's phase), `random` = at a random moment
Figures: tenant_export_s / tenant_restore_s (ours, median), raw_dump_s (pg_dump -Fc -n + tar of the media),
raw_restore_s, overhead_pct ((ours - raw) / raw of the export), full_1000_s (full backup of BACKUP_BENCH_SCHEMAS
schemas), rpo_s (median data lost when the machine is lost: only WAL shipped to the storage survives), rpo_max_s
(the largest loss of the runs), rpo_bound_s (archive_timeout + the shipping interval + the longest shipment).
"""
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

MB = 1024 * 1024
SIZE_MB = int(os.environ.get("BACKUP_BENCH_MB", "1024"))
MEDIA_SHARE = float(os.environ.get("BACKUP_BENCH_MEDIA_SHARE", "0.5"))
RUNS = int(os.environ.get("BACKUP_BENCH_RUNS", "3"))
SCHEMAS = int(os.environ.get("BACKUP_BENCH_SCHEMAS", "1000"))
RPO_RUNS = int(os.environ.get("BACKUP_BENCH_RPO_RUNS", "3"))
RPO_MOMENT = os.environ.get("BACKUP_BENCH_RPO_MOMENT", "worst")


def say(text):
    print(text, flush=True)


def timed(func, *args, **kwargs):
    started = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - started, result


def main():
    work = Path(tempfile.mkdtemp(prefix="sb-bench-backups-", dir="/tmp"))
    os.chmod(work, 0o755)
    for name, value in (("BACKUP_DIR", work / "backups"), ("MEDIA_ROOT", work / "media"),
                        ("WHATSAPP_STORE_DIR", work / "stores"), ("BACKUP_WAL_SPOOL_DIR", work / "spool-unused")):
        os.environ[name] = str(value)
    os.environ.update(BACKUP_ENCRYPTION_KEY="bench passphrase", CELERY_TASK_ALWAYS_EAGER="true",
                      BACKUP_SESSION_STOP_WAIT_SECONDS="0", DATABASE_POOL="false", LOG_LEVEL="WARNING")
    # Imported after the environment is set: settings read it once.
    from backups.tests.cluster import ScratchCluster

    cluster = ScratchCluster("shared_buffers = 256MB\nmax_wal_size = 4GB\n").start()
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{cluster.port}/postgres"
    say(f"scratch cluster on port {cluster.port} ({cluster.bin_dir}), files in {work}")
    figures = {"bench": "backup_restore", "size_mb": SIZE_MB, "runs": RUNS}
    try:
        from bench._common import bench_database, quiet_logging

        with bench_database(log=say):
            quiet_logging()
            if SIZE_MB:
                figures.update(tenant_figures(work))
            if SCHEMAS:
                figures.update(full_figures(cluster))
            if RPO_RUNS:
                figures.update(rpo_figures(work))
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    from bench._common import emit

    emit(figures)


# --- one tenant of SIZE_MB ------------------------------------------------------------------------------------------

def make_tenant():
    from django.db import connection
    from django.utils import timezone

    from tenants.models import Domain, Tenant
    from tenants.pool import create_and_migrate_schema

    create_and_migrate_schema("t_bench")
    connection.set_schema_to_public()
    tenant = Tenant.objects.create(name="Bench", slug="bench", schema_name="t_bench", status=Tenant.Status.ACTIVE,
                                   approved_at=timezone.now())
    Domain.objects.create(tenant=tenant, domain="bench.localhost", is_primary=True)
    return tenant


def fill_tenant(tenant):
    from django.conf import settings
    from django.db import connection

    db_target = int(SIZE_MB * (1 - MEDIA_SHARE)) * MB
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO t_bench")
        cursor.execute("INSERT INTO whatsapp_whatsappsession (name, label, status, status_detail, should_run, phone,"
                       " push_name, jid_user, jid_device, qr_code, pair_code, pairing_phone, created_at) VALUES "
                       "('bench', '', 'stopped', '', false, '', '', '', 0, '', '', '', now()) RETURNING id")
        session_id = cursor.fetchone()[0]
        expressions = {
            "session_id": str(int(session_id)), "direction": "'in'", "from_phone": "'+62812' || (n % 100000)",
            "chat_jid": "'62812' || (n % 100000) || '@s.whatsapp.net'", "type": "'text'", "status": "'delivered'",
            "text": "'Order ' || n || ' for ' || md5(n::text) || ': ' || "
                    "repeat('please deliver it tomorrow morning. ', 1 + n % 6) || md5(random()::text)",
            "provider_message_id": "'SIM' || md5(n::text)", "attempts": "1",
            "created_at": "now() - (n || ' seconds')::interval",
        }
        # Every other NOT NULL column gets its type's empty value (Django keeps defaults in Python, not in SQL).
        cursor.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 't_bench' "
                       "AND table_name = 'whatsapp_message' AND is_nullable = 'NO' AND column_default IS NULL "
                       "AND is_identity = 'NO'")
        empty = {"boolean": "false", "integer": "0", "bigint": "0", "smallint": "0", "jsonb": "'{}'"}
        for column, data_type in cursor.fetchall():
            expressions.setdefault(column, empty.get(data_type, "''"))
        insert = (f"INSERT INTO whatsapp_message ({', '.join(expressions)}) SELECT {', '.join(expressions.values())} "
                  "FROM generate_series(%s, %s) n")
        size, start = 0, 0
        while size < db_target:
            cursor.execute(insert.replace("%", "%%").replace("%%s", "%s"), [start + 1, start + 50000])
            start += 50000
            cursor.execute("SELECT pg_total_relation_size('whatsapp_message')")
            size = cursor.fetchone()[0]
        cursor.execute("SET search_path TO public")
        cursor.execute("VACUUM ANALYZE t_bench.whatsapp_message")
    media = Path(settings.MEDIA_ROOT) / "t_bench" / "whatsapp" / "2026" / "01"
    media.mkdir(parents=True)
    media_target = int(SIZE_MB * MEDIA_SHARE) * MB
    written, index = 0, 0
    block = os.urandom(4 * MB)
    while written < media_target:
        # Distinct files (a counter in front), incompressible like photos and videos.
        (media / f"{index:05d}.jpg").write_bytes(index.to_bytes(8, "big") + block[8:])
        written += len(block)
        index += 1
    return size, written


def raw_round(database, work):
    """pg_dump -Fc -n of the schema and a tar of its media; pg_restore into a new database and untar."""
    from django.conf import settings

    from backups import pg

    dump = work / "raw.dump"
    media_tar = work / "raw-media.tar"
    dump_s, _ = timed(subprocess.run, [pg.tool("pg_dump", database), "-Fc", "-n", "t_bench", "-f", str(dump)],
                      env=database.env(), check=True)
    tar_s, _ = timed(subprocess.run, ["tar", "-cf", str(media_tar), "-C", settings.MEDIA_ROOT, "t_bench"], check=True)
    pg.drop_database(database, "raw_restore")
    target = pg.create_database(database, "raw_restore")
    restore_s, _ = timed(subprocess.run, [pg.tool("pg_restore", database), "-d", "raw_restore", str(dump)],
                         env=target.env(), check=True)
    untar = work / "raw-untar"
    untar.mkdir()
    untar_s, _ = timed(subprocess.run, ["tar", "-xf", str(media_tar), "-C", str(untar)], check=True)
    sizes = (dump.stat().st_size, media_tar.stat().st_size)
    pg.drop_database(database, "raw_restore")
    shutil.rmtree(untar)
    dump.unlink()
    media_tar.unlink()
    return {"dump_s": dump_s, "tar_s": tar_s, "restore_s": restore_s, "untar_s": untar_s, "bytes": sizes}


def our_round(tenant, admin):
    from django.conf import settings

    from backups import actions, restoring
    from backups.models import Backup, Restore, Status

    export_s, backup = timed(actions.start_backup, kind="tenant", tenant=tenant, acting_user=admin, verify=False)
    backup.refresh_from_db()
    assert backup.status == Status.SUCCEEDED, backup.error
    restore_s, restore = timed(actions.request_restore, backup, acting_user=admin)
    restore.refresh_from_db()
    assert restore.status == Status.SUCCEEDED, restore.error
    size = backup.size
    # What a restore leaves aside for its grace period, and the file, go before the next run.
    restoring.drop_schema(restore.previous_schema)
    shutil.rmtree(Path(settings.MEDIA_ROOT) / restore.previous_schema, ignore_errors=True)
    actions.delete_backup(Backup.objects.get(pk=backup.pk), acting_user=admin)
    Restore.objects.all().delete()
    return export_s, restore_s, size


def tenant_figures(work):
    from django.contrib.auth import get_user_model

    from backups import pg

    admin = get_user_model().objects.create_superuser(email="bench-admin@example.com", password="x" * 12)
    tenant = make_tenant()
    say(f"filling a tenant of ~{SIZE_MB} MB ({int(MEDIA_SHARE * 100)}% media) …")
    fill_s, (db_bytes, media_bytes) = timed(fill_tenant, tenant)
    say(f"  {db_bytes / MB:.0f} MB of message rows + {media_bytes / MB:.0f} MB of media in {fill_s:.0f} s")
    database = pg.Database.from_settings()
    raw, ours = [], []
    for run in range(RUNS):
        raw.append(raw_round(database, work))
        ours.append(our_round(tenant, admin))
        r, o = raw[-1], ours[-1]
        say(f"run {run + 1}: raw pg_dump {r['dump_s']:.1f} s + tar {r['tar_s']:.1f} s, pg_restore "
            f"{r['restore_s']:.1f} s + untar {r['untar_s']:.1f} s | ours: export {o[0]:.1f} s, restore "
            f"{o[1]:.1f} s ({o[2] / MB:.0f} MB stored)")
    total_mb = (db_bytes + media_bytes) / MB
    raw_dump = statistics.median(r["dump_s"] + r["tar_s"] for r in raw)
    raw_restore = statistics.median(r["restore_s"] + r["untar_s"] for r in raw)
    export = statistics.median(o[0] for o in ours)
    restore = statistics.median(o[1] for o in ours)
    overhead = (export - raw_dump) / raw_dump * 100
    say(f"tenant of {total_mb:.0f} MB, medians of {RUNS}: export {export:.1f} s ({total_mb / export:.0f} MB/s), "
        f"restore {restore:.1f} s ({total_mb / restore:.0f} MB/s), export + restore {export + restore:.1f} s")
    say(f"raw: pg_dump -Fc -n + tar {raw_dump:.1f} s, pg_restore + untar {raw_restore:.1f} s; "
        f"raw pg_dump alone {statistics.median(r['dump_s'] for r in raw):.1f} s "
        f"({raw[0]['bytes'][0] / MB:.0f} MB); our export's overhead {overhead:+.0f}%")
    return {"tenant_mb": round(total_mb), "tenant_export_s": round(export, 2), "tenant_restore_s": round(restore, 2),
            "export_mb_s": round(total_mb / export, 1), "restore_mb_s": round(total_mb / restore, 1),
            "raw_dump_s": round(raw_dump, 2),
            "raw_pg_dump_only_s": round(statistics.median(r["dump_s"] for r in raw), 2),
            "raw_restore_s": round(raw_restore, 2), "overhead_pct": round(overhead, 1)}


# --- a full backup over many schemas -------------------------------------------------------------------------------

def full_figures(cluster):
    import io

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from backups import actions, pg
    from backups.models import Status

    database = pg.Database.from_settings()
    if not SIZE_MB:
        get_user_model().objects.create_superuser(email="bench-admin@example.com", password="x" * 12)
        make_tenant()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE t_bench.whatsapp_message")
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "t_bench", ignore_errors=True)
    ddl = subprocess.run([pg.tool("pg_dump", database), "-s", "-n", "t_bench"], env=database.env(),
                         capture_output=True, check=True).stdout
    say(f"creating {SCHEMAS - 1} more tenant schemas (copies of a migrated one) …")
    started = time.perf_counter()
    with database.connect(autocommit=True) as conn:
        for index in range(1, SCHEMAS):
            out = io.BytesIO()
            pg.rewrite_schema(io.BytesIO(ddl), out, "t_bench", f"t_bench_{index:05d}")
            # psql's meta-commands (\restrict, pg_dump's guard since 15.14) are not SQL.
            conn.execute(b"\n".join(line for line in out.getvalue().split(b"\n") if not line.startswith(b"\\")
                                    and b"set_config('search_path', '', false)" not in line))
    with database.connect() as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname LIKE 't\\_bench%'").fetchone()[0]
        locks = conn.execute("SELECT current_setting('max_locks_per_transaction')::int * "
                             "current_setting('max_connections')::int").fetchone()[0]
    say(f"  {SCHEMAS} schemas, {tables} tables in {time.perf_counter() - started:.0f} s; the lock table holds "
        f"about {locks} locks")
    admin = get_user_model().objects.get(email="bench-admin@example.com")
    seconds, backup = timed(actions.start_backup, kind="full", acting_user=admin, verify=False)
    backup.refresh_from_db()
    assert backup.status == Status.SUCCEEDED, backup.error
    batches = len(backup.manifest["database"]["dumps"])
    say(f"full backup of {SCHEMAS} schemas: {seconds:.1f} s in {batches} pg_dump batches, "
        f"{backup.size / MB:.1f} MB stored")
    return {"full_schemas": SCHEMAS, "full_tables": tables, "full_1000_s": round(seconds, 1), "full_batches": batches}


# --- RPO of point-in-time recovery --------------------------------------------------------------------------------

def rpo_figures(work):
    import psycopg
    from django.conf import settings
    from django.utils import timezone

    from backups import processes, runner, storage, wal
    from backups.models import Backup
    from backups.tests.cluster import ScratchCluster, private_dir

    archive_timeout = int(os.environ.get("BACKUP_BENCH_ARCHIVE_TIMEOUT", settings.BACKUP_ARCHIVE_TIMEOUT_SECONDS))
    ship_seconds = float(os.environ.get("BACKUP_BENCH_SHIP_SECONDS", settings.BACKUP_WAL_SHIP_SECONDS))
    spool = private_dir("sb-bench-spool-")
    settings.BACKUP_WAL_SPOOL_DIR = str(spool)
    source = ScratchCluster(wal.archive_settings(spool, archive_timeout)).start()
    losses, shipments = [], []
    say(f"RPO: archive_timeout {archive_timeout} s, WAL shipped every {ship_seconds:g} s, the machine lost at the "
        f"{RPO_MOMENT} moment")
    try:
        source.sql("CREATE TABLE beats (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        for trial in range(RPO_RUNS):
            base = Backup.objects.create(kind="base", scope="base", status="running", started_at=timezone.now())
            runner.make(base, lambda *args, **kwargs: None, database=source.database())
            # What the base backup left in the spool goes with the first shipment; a segment beyond these was
            # closed by archive_timeout (the writes below make far less than a segment of WAL).
            after_base = set(os.listdir(spool))
            stop, lose_now = threading.Event(), threading.Event()
            last_commit = {"at": None}
            first_commit = {"at": source.sql("INSERT INTO beats DEFAULT VALUES RETURNING at")[0][0]}

            def write():
                with source.connect() as conn:
                    # A machine lost at an instant commits nothing after it (the crash itself takes a moment).
                    while not stop.is_set() and not lose_now.is_set():
                        try:
                            last_commit["at"] = conn.execute("INSERT INTO beats DEFAULT VALUES RETURNING at"
                                                             ).fetchone()[0]
                        except psycopg.OperationalError:
                            return  # the crash
                        time.sleep(0.1)

            def ship():
                # Beat's ticks have no relation to the moment Postgres switches segments: a random phase.
                if stop.wait(random.uniform(0, ship_seconds)):
                    return
                while True:
                    closed = {name for name in os.listdir(spool) if len(name) == 24} - after_base
                    if RPO_MOMENT == "worst" and closed:
                        lose_now.set()  # the machine dies just before this shipment
                        return
                    started = time.perf_counter()
                    if wal.ship_wal(spool):
                        shipments.append(time.perf_counter() - started)
                    if stop.wait(ship_seconds):
                        return

            threads = [threading.Thread(target=write), threading.Thread(target=ship)]
            for thread in threads:
                thread.start()
            if RPO_MOMENT == "worst":
                lose_now.wait(archive_timeout + 3 * ship_seconds + 30)
            else:
                time.sleep(random.uniform(archive_timeout * 0.5, archive_timeout * 1.5))
                lose_now.set()
            source.crash()  # the machine is lost: its disk and unshipped spool with it
            stop.set()
            for thread in threads:
                thread.join()
            for leftover in spool.iterdir():
                leftover.unlink()
            recovered = private_dir("sb-bench-pitr-") / "data"
            source.others.append(recovered)
            port = processes.free_port()
            recover_s, _ = timed(wal.pitr_restore, None, recovered, port=port, bin_dir=source.bin_dir)
            newest = source.sql("SELECT max(at) FROM beats", port=port)[0][0]
            # Nothing written since the base backup survived: everything since the first write is lost.
            lost = (last_commit["at"] - (newest or first_commit["at"])).total_seconds()
            losses.append(lost)
            say(f"RPO trial {trial + 1}: {lost:.1f} s of writes lost; recovery took {recover_s:.1f} s")
            processes.stop_cluster(recovered, bin_dir=source.bin_dir, mode="immediate")
            processes.start_cluster(source.data, bin_dir=source.bin_dir, log_file=source.root / "server.log")
        store = storage.store()
        stored = store.listdir(wal.WAL_PREFIX)
        segment_kb = statistics.median(store.size(name) for name in stored) / 1024 if stored else 0
    finally:
        source.stop()
        shutil.rmtree(spool, ignore_errors=True)
    bound = archive_timeout + ship_seconds + max(shipments, default=0)
    say(f"RPO over {len(losses)} losses: median {statistics.median(losses):.1f} s, worst {max(losses):.1f} s; "
        f"bound archive_timeout + shipping interval + longest shipment ({max(shipments, default=0):.2f} s) = "
        f"{bound:.1f} s; a shipped segment takes {segment_kb:.0f} KB (median)")
    return {"rpo_s": round(statistics.median(losses), 1), "rpo_max_s": round(max(losses), 1),
            "rpo_bound_s": round(bound, 1), "rpo_runs": len(losses), "rpo_moment": RPO_MOMENT,
            "archive_timeout_s": archive_timeout, "ship_every_s": ship_seconds,
            "wal_segment_stored_kb": round(segment_kb, 1)}


if __name__ == "__main__":
    main()
