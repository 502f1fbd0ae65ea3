"""A full backup (every schema, the device stores, the media) is verified by a restore into a scratch database, and
`manage.py restore_backup` restores it into a new database equal to the manifest, from its ID or from the bare file.
The S3 path runs against a local moto server: stored in the bucket, verified, restored."""
import os
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
