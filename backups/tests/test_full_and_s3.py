"""A full backup (every schema, the device stores, the media) is verified by a restore into a scratch database, and
`manage.py restore_backup` restores it into a new database equal to the manifest, from its ID or from the bare file.
The S3 path runs against a local moto server: stored in the bucket, verified, restored."""
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import tenant_context
from moto.server import ThreadedMotoServer

from backups import actions, pg, processes, storage
from backups.models import Status
from whatsapp.models import BlockedNumber

pytestmark = pytest.mark.django_db(transaction=True)


def add_rows(tenant, n):
    with tenant_context(tenant):
        for i in range(n):
            BlockedNumber.objects.create(phone=f"+1415666{i:04d}", reason="test")
    connection.set_schema_to_public()


def test_a_full_backup_restores_into_a_new_database(named, settings):
    add_rows(named.acme, 3)
    add_rows(named.globex, 2)
    Path(settings.WHATSAPP_STORE_DIR).mkdir(parents=True)
    Path(settings.WHATSAPP_STORE_DIR, "t_test_acme%3A1.simulator.json").write_text('{"device": 1}')
    Path(settings.MEDIA_ROOT, "t_test_acme", "whatsapp").mkdir(parents=True)
    Path(settings.MEDIA_ROOT, "t_test_acme", "whatsapp", "photo.jpg").write_bytes(os.urandom(5000))

    backup = actions.start_backup(kind="full", acting_user=named.admin)
    backup.refresh_from_db()
    assert backup.status == Status.SUCCEEDED and backup.verified_at, (backup.error, backup.verification_error)
    schemas = backup.manifest["database"]["schemas"]
    assert schemas["t_test_acme"]["tables"]["whatsapp_blockednumber"] == 3
    assert schemas["public"]["tables"]["tenants_tenant"] >= 2
    assert backup.manifest["files"]["store"]["count"] == 1 and backup.manifest["files"]["media"]["count"] == 1

    live = pg.Database.from_settings()
    for name, arguments in (("sb_test_restored_a", [str(backup.pk)]),
                            ("sb_test_restored_b", ["--file", str(Path(settings.BACKUP_DIR, backup.storage_name)),
                                                    "--sha256", backup.sha256])):
        pg.drop_database(live, name)
        try:
            call_command("restore_backup", *arguments, "--target-database", name)
            with live.named(name).connect() as conn:
                phones = conn.execute("SELECT count(*) FROM t_test_acme.whatsapp_blockednumber").fetchone()[0]
                globex = conn.execute("SELECT count(*) FROM t_test_globex.whatsapp_blockednumber").fetchone()[0]
            assert (phones, globex) == (3, 2)
        finally:
            pg.drop_database(live, name)


@pytest.fixture
def s3(settings, monkeypatch):
    port = processes.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="switchboard-backups")
    settings.BACKUP_STORAGE_URL = f"s3://switchboard-backups/nightly?endpoint_url={endpoint}&region=us-east-1"
    yield client
    server.stop()


def test_backups_go_to_an_s3_bucket_and_come_back(named, settings, s3, drop_restored_schemas):
    add_rows(named.acme, 4)
    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin)
    backup.refresh_from_db()
    assert backup.status == Status.SUCCEEDED and backup.verified_at, (backup.error, backup.verification_error)
    keys = {item["Key"]: item["Size"] for item in s3.list_objects_v2(Bucket="switchboard-backups")["Contents"]}
    assert keys[f"nightly/{backup.storage_name}"] == backup.size
    assert "nightly/keys/identity.age" in keys
    assert not [p for p in Path(settings.BACKUP_DIR).rglob("*.age")]  # nothing kept locally
    with tenant_context(named.acme):
        BlockedNumber.objects.all().delete()
    connection.set_schema_to_public()

    restore = actions.request_restore(backup, acting_user=named.admin)
    restore.refresh_from_db()
    assert restore.status == Status.SUCCEEDED, restore.error
    with tenant_context(named.acme):
        assert BlockedNumber.objects.count() == 4
    connection.set_schema_to_public()
    assert storage.store().describe() == "s3://switchboard-backups/nightly"


def run_command(args, env, cwd):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_restore_backup_replace_swaps_a_stopped_installation_back(named, settings, tmp_path):
    """`restore_backup ID --replace` run as the operator runs it (its own process, connection pool on) against a
    stand-in for the live installation: a database restored from a later backup, then damaged. The live test
    database is never the one replaced."""
    add_rows(named.acme, 3)
    store_dir, media_root = Path(settings.WHATSAPP_STORE_DIR), Path(settings.MEDIA_ROOT)
    store_dir.mkdir(parents=True)
    (store_dir / "t_test_acme%3A1.simulator.json").write_text('{"device": "from the backup"}')
    wanted = actions.start_backup(kind="full", acting_user=named.admin, verify=False)
    wanted.refresh_from_db()
    assert wanted.status == Status.SUCCEEDED, wanted.error
    # A later backup holds the first one's row: restored, it is the "live" database the command looks ID up in.
    later = actions.start_backup(kind="full", acting_user=named.admin, verify=False)
    later.refresh_from_db()
    live_db = pg.Database.from_settings()
    stand_in = f"{live_db.name[:40]}_rl"
    restored = f"{live_db.name[:40]}_rn"
    for name in (stand_in, restored):
        pg.drop_database(live_db, name)
    call_command("restore_backup", str(later.pk), "--target-database", stand_in)
    try:
        with live_db.named(stand_in).connect(autocommit=True) as conn:
            conn.execute("DELETE FROM t_test_acme.whatsapp_blockednumber")  # the damage to undo
        (store_dir / "t_test_acme%3A1.simulator.json").write_text('{"device": "damaged"}')

        db = connection.settings_dict
        env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{stand_in}",
               "DATABASE_POOL": "true", "BACKUP_DIR": settings.BACKUP_DIR, "MEDIA_ROOT": str(media_root),
               "WHATSAPP_STORE_DIR": str(store_dir), "BACKUP_ENCRYPTION_KEY": settings.BACKUP_ENCRYPTION_KEY,
               "DJANGO_SETTINGS_MODULE": "config.settings"}
        args = ["restore_backup", str(wanted.pk), "--replace", "--target-database", restored]
        root = Path(__file__).resolve().parents[2]
        with live_db.named(stand_in).connect() as still_running:  # a process not stopped: refused at once
            still_running.execute("SELECT 1")
            done = run_command(args, env, root)
            assert done.returncode != 0 and "1 session(s) still use" in done.stderr, done.stderr[-2000:]
        with live_db.connect(autocommit=True) as conn:
            assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [restored]).fetchall()

        done = run_command(args, env, root)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Swapped in" in done.stdout
        with live_db.named(stand_in).connect() as conn:  # the name the installation uses now holds the backup
            assert conn.execute("SELECT count(*) FROM t_test_acme.whatsapp_blockednumber").fetchone()[0] == 3
        with live_db.connect(autocommit=True) as conn:
            previous = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                       [f"{stand_in}\\_pre\\_%"])]
        assert len(previous) == 1
        with live_db.named(previous[0]).connect() as conn:  # the replaced one is kept, as it was
            assert conn.execute("SELECT count(*) FROM t_test_acme.whatsapp_blockednumber").fetchone()[0] == 0
        assert (store_dir / "t_test_acme%3A1.simulator.json").read_text() == '{"device": "from the backup"}'
        kept = [p for p in store_dir.parent.iterdir() if p.name.startswith(f"{store_dir.name}.pre-")]
        assert len(kept) == 1 and (kept[0] / "t_test_acme%3A1.simulator.json").read_text() == '{"device": "damaged"}'
    finally:
        with live_db.connect(autocommit=True) as conn:
            names = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                    [f"{live_db.name[:40]}\\_r%"])]
        for name in names:
            pg.drop_database(live_db, name)
