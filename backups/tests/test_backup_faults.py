"""Bad input and faults: the API is for platform admins only (404 for anyone else), two backups of one scope (409),
a wrong or missing key and a damaged file are refused with a clear error and change nothing, a backup killed
midway ends failed without a partial file and alerts, retention keeps the newest verified backup."""
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context
from pyrage import x25519

from backups import actions, storage
from backups.models import Backup, Restore, Status
from whatsapp.models import BlockedNumber
from whatsapp.tests.support import error, ok

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def add_rows(tenant, n=3, start=0):
    with tenant_context(tenant):
        for i in range(start, start + n):
            BlockedNumber.objects.create(phone=f"+1415555{i:04d}", reason="test")
    connection.set_schema_to_public()


def blocked(tenant):
    with tenant_context(tenant):
        rows = sorted(BlockedNumber.objects.values_list("phone", flat=True))
    connection.set_schema_to_public()
    return rows


def schemas_like(pattern):
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [pattern])
        return [row[0] for row in cursor.fetchall()]


def test_only_platform_admins_see_backups(named, clients, client):
    alice = clients["alice"]
    for method, url in (("get", "/api/v1/backups"), ("post", "/api/v1/backups"), ("get", "/api/v1/backups/stats"),
                        ("delete", "/api/v1/backups/cleanup"), ("post", "/api/v1/backups/export-tenant")):
        error(getattr(alice, method)(url, {}, format="json"), 404, "not_found")
    assert client.get("/api/v1/backups").status_code == 401
    client.force_login(named.alice)
    assert client.get("/platform/backups/").status_code == 404
    # An existing backup and restore are as invisible as a missing one, on the API and on the page.
    backup = Backup.objects.create(kind="tenant", scope="tenant:t_test_acme", tenant=named.acme,
                                   tenant_schema="t_test_acme", status=Status.SUCCEEDED, storage_name="x")
    restore = Restore.objects.create(backup=backup, mode="in_place", scope="tenant:t_test_acme", tenant=named.acme,
                                     status=Status.SUCCEEDED)
    for method, url in (("get", f"/api/v1/backups/{backup.pk}"), ("get", f"/api/v1/backups/{backup.pk}/download"),
                        ("post", f"/api/v1/backups/{backup.pk}/restore"), ("delete", f"/api/v1/backups/{backup.pk}"),
                        ("get", f"/api/v1/backups/restores/{restore.pk}")):
        error(getattr(alice, method)(url, {}, format="json"), 404, "not_found")
    for url in (f"/platform/backups/{backup.pk}/download", f"/platform/backups/{backup.pk}/delete",
                f"/platform/backups/{backup.pk}/restore", "/platform/backups/start"):
        assert client.post(url).status_code == 404, url
    assert Backup.objects.filter(pk=backup.pk).exists() and Restore.objects.count() == 1


def test_admin_backs_up_through_the_api_and_a_second_one_of_the_same_scope_is_refused(named, clients, settings):
    add_rows(named.acme)
    admin = clients["admin"]
    running = Backup.objects.create(kind="tenant", scope="tenant:t_test_acme", tenant=named.acme,
                                    tenant_schema="t_test_acme", status=Status.RUNNING)
    refused = error(admin.post("/api/v1/backups", {"type": "tenant", "tenant_id": named.acme.pk}, format="json"),
                    409, "backup_already_running")
    assert refused["details"]["backup_id"] == running.pk
    running.delete()

    data = ok(admin.post("/api/v1/backups", {"type": "tenant", "tenant_id": named.acme.pk}, format="json"), 202)
    detail = ok(admin.get(f"/api/v1/backups/{data['id']}"))
    assert detail["status"] == "succeeded" and detail["verified_at"] and detail["progress"] == 100
    assert len(detail["sha256"]) == 64 and detail["encryption"] == "age-passphrase"
    listed = admin.get(f"/api/v1/backups?tenant_id={named.acme.pk}&status=succeeded").json()
    assert [row["id"] for row in listed["data"]] == [data["id"]] and listed["pagination"]["total"] == 1
    stats = ok(admin.get("/api/v1/backups/stats"))
    assert stats["count"] == 1 and stats["total_size"] == detail["size"] and stats["failures"] == 0
    download = admin.get(f"/api/v1/backups/{data['id']}/download")
    stored = Path(settings.BACKUP_DIR, detail["storage_name"]).read_bytes()
    assert download.status_code == 200 and b"".join(download.streaming_content) == stored
    error(admin.post("/api/v1/backups", {"type": "nightly"}, format="json"), 400, "validation_error")
    full = error(admin.post(f"/api/v1/backups/{data['id']}/restore", {"as_new_tenant": "maybe"}, format="json"),
                 400, "validation_error")
    assert full


def test_two_backups_of_one_scope_that_race_past_the_check_the_second_gets_409(named, clients, monkeypatch):
    """Both requests looked before either inserted: the database's one-active-per-scope constraint decides."""
    running = Backup.objects.create(kind="full", scope="full", status=Status.RUNNING)
    looks = []

    def busy_with(scope):
        looks.append(scope)
        return None if len(looks) == 1 else running  # the first look came before the other's insert

    monkeypatch.setattr(actions, "_busy_with", busy_with)
    refused = error(clients["admin"].post("/api/v1/backups", {"type": "full"}, format="json"), 409,
                    "backup_already_running")
    assert refused["details"]["backup_id"] == running.pk
    assert list(Backup.objects.values_list("pk", flat=True)) == [running.pk]


def test_a_full_backup_is_restored_offline_not_through_the_api(named, clients):
    backup = Backup.objects.create(kind="full", scope="full", status=Status.SUCCEEDED, storage_name="x")
    refused = error(clients["admin"].post(f"/api/v1/backups/{backup.pk}/restore", {}, format="json"), 409,
                    "full_restore_needs_maintenance")
    assert refused["details"]["command"] == f"manage.py restore_backup {backup.pk}"


def test_public_key_backups_need_the_identity_and_refuse_a_wrong_one(named, settings, drop_restored_schemas):
    identity = x25519.Identity.generate()
    settings.BACKUP_AGE_RECIPIENTS = [str(identity.to_public())]
    add_rows(named.acme)
    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin)
    backup.refresh_from_db()
    # Verified with the one-off identity the worker held in memory; the server keeps no key that opens it.
    assert backup.verified_at and backup.encryption == "age-recipients"
    assert not storage.store().exists(backup.storage_name + ".key.age")
    add_rows(named.acme, 2, start=3)  # changes after the backup: a refused restore must keep them

    for given, message in ((None, "no identity was given"), (str(x25519.Identity.generate()), "Wrong key")):
        restore = actions.request_restore(backup, acting_user=named.admin, identity=given)
        restore.refresh_from_db()
        assert restore.status == Status.FAILED and message in restore.error, restore.error
        assert len(blocked(named.acme)) == 5 and not schemas_like("t\\_test\\_acme\\_%")

    restore = actions.request_restore(backup, acting_user=named.admin, identity=str(identity))
    restore.refresh_from_db()
    assert restore.status == Status.SUCCEEDED, restore.error
    assert len(blocked(named.acme)) == 3


def test_a_damaged_file_is_refused_and_nothing_changes(named, settings, drop_restored_schemas):
    add_rows(named.acme)
    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin, verify=False)
    backup.refresh_from_db()
    path = Path(settings.BACKUP_DIR, backup.storage_name)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    add_rows(named.acme, 2, start=3)

    restore = actions.request_restore(backup, acting_user=named.admin)
    restore.refresh_from_db()
    assert restore.status == Status.FAILED and "sha256 is not the one recorded" in restore.error
    assert len(blocked(named.acme)) == 5 and not schemas_like("t\\_test\\_acme\\_%")
    assert mail.outbox and "failed" in mail.outbox[-1].subject


def test_a_killed_backup_ends_failed_without_a_partial_file(named, settings, backup_env):
    add_rows(named.acme)
    media = Path(settings.MEDIA_ROOT, "t_test_acme")
    media.mkdir(parents=True)
    (media / "big.bin").write_bytes(os.urandom(300 * 1024 * 1024))  # long enough to be killed while writing
    backup = Backup.objects.create(kind="tenant", scope="tenant:t_test_acme", tenant=named.acme,
                                   tenant_name="Acme", tenant_schema="t_test_acme")
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "DATABASE_POOL": "false", "BACKUP_DIR": settings.BACKUP_DIR, "MEDIA_ROOT": settings.MEDIA_ROOT,
           "WHATSAPP_STORE_DIR": settings.WHATSAPP_STORE_DIR, "BACKUP_ENCRYPTION_KEY": settings.BACKUP_ENCRYPTION_KEY,
           "DJANGO_SETTINGS_MODULE": "config.settings"}
    worker = subprocess.Popen([sys.executable, "-c", "import django; django.setup(); "
                               f"from backups.runner import run_backup; run_backup({backup.pk})"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        backup.refresh_from_db()
        if backup.stage.startswith("Compressing") or worker.poll() is not None:
            break
        time.sleep(0.02)
    assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    backup.refresh_from_db()
    assert backup.status == Status.RUNNING  # nobody has noticed yet

    actions.housekeeping()
    backup.refresh_from_db()
    assert backup.status == Status.FAILED and "died midway" in backup.error
    stored = [p for p in Path(settings.BACKUP_DIR).rglob("*") if p.is_file() and ".work" not in p.parts]
    assert [p.name for p in stored] == ["identity.age"]  # the keyring, and no part of the backup
    assert not (storage.work_root() / f"backup-{backup.pk}").exists()
    assert any(f"Backup #{backup.pk}" in message.subject for message in mail.outbox)


def test_retention_keeps_the_newest_verified_backup(named, settings):
    store = storage.store()
    now = timezone.now()

    def backup(days_old, **fields):
        row = Backup.objects.create(kind="full", scope="full", status=fields.pop("status", Status.SUCCEEDED),
                                    storage_name=f"backups/full/{days_old}.tar.zst.age", **fields)
        Backup.objects.filter(pk=row.pk).update(created_at=now - timedelta(days=days_old))
        store.write_bytes(row.storage_name, b"x")
        return row

    newest_verified = backup(40, verified_at=now - timedelta(days=40))
    older_verified = backup(50, verified_at=now - timedelta(days=50))
    unverified_old = backup(35)
    failed_old = backup(45, status=Status.FAILED)
    recent = backup(2)
    result = actions.cleanup_backups(days=30, acting_user=named.admin)
    assert sorted(result["deleted"]) == sorted([older_verified.pk, unverified_old.pk, failed_old.pk])
    assert result["kept"] == [newest_verified.pk]
    assert set(Backup.objects.values_list("pk", flat=True)) == {newest_verified.pk, recent.pk}
    assert store.exists(newest_verified.storage_name) and not store.exists(older_verified.storage_name)
    # Through the API too: older than a day goes, the newest verified one stays.
    data = ok(named_admin_client(named).delete("/api/v1/backups/cleanup?days=1"))
    assert data["deleted"] == [recent.pk] and data["kept"] == [newest_verified.pk]


def named_admin_client(named):
    from rest_framework.test import APIClient  # here: the api_as fixture cannot be asked for inside a helper

    client = APIClient()
    client.force_authenticate(named.admin)
    return client


def test_restore_waits_for_no_one_but_refuses_to_overlap_a_backup_of_the_tenant(named):
    backup = Backup.objects.create(kind="tenant", scope="tenant:t_test_acme", tenant=named.acme,
                                   tenant_schema="t_test_acme", status=Status.SUCCEEDED, storage_name="x")
    Backup.objects.create(kind="tenant", scope="tenant:t_test_acme", tenant=named.acme,
                          tenant_schema="t_test_acme", status=Status.RUNNING)
    with pytest.raises(Exception) as refused:
        actions.request_restore(backup, acting_user=named.admin)
    assert getattr(refused.value, "status", None) == 409
    assert not Restore.objects.exists()
    assert django_settings.BACKUP_RETENTION_DAYS == 30
