"""Faults that must end in an alert: a backup that fills the disk midway ends failed, leaves no partial file and
fires `backup_failed` through the alerts app (email to the platform admins, the Backups page); a nightly backup
whose verification fails fires `backup_unverified`, shown on the page, and a later verified backup resolves it."""
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from alerts import actions as alert_actions
from alerts.models import Alert
from backups import actions, archive, storage, wal
from backups.models import Backup, Status
from whatsapp.models import BlockedNumber

pytestmark = pytest.mark.django_db(transaction=True)


def add_rows(tenant, n=3):
    with tenant_context(tenant):
        for i in range(n):
            BlockedNumber.objects.create(phone=f"+1415777{i:04d}", reason="test")
    connection.set_schema_to_public()


def add_media(settings, megabytes):
    media = Path(settings.MEDIA_ROOT, "t_test_acme", "whatsapp")
    media.mkdir(parents=True)
    (media / "video.mp4").write_bytes(os.urandom(megabytes * 1024 * 1024))  # incompressible


def files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


def firing(key):
    return Alert.objects.filter(key=key, state=Alert.State.FIRING).first()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real full disk: a 32 MB tmpfs mounted for the test. Mounting needs root (the suite runs as root here); where
    it cannot, the test says so and skips, and the storage-boundary test below still runs."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_backup_that_fills_the_disk_ends_failed_without_a_partial_file_and_alerts(named, settings, tiny_disk):
    settings.BACKUP_DIR = str(tiny_disk)
    add_rows(named.acme)
    add_media(settings, 64)  # twice the disk: it fills while the archive is written

    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin)
    backup.refresh_from_db()
    assert backup.status == Status.FAILED and backup.finished_at
    assert "The disk is full (No space left on device)" in backup.error, backup.error
    assert not backup.storage_name and not backup.verified_at
    # The keyring (written before the disk filled) and nothing of the backup, not even in the work folder.
    assert files_under(tiny_disk) == ["keys/identity.age"]
    alert = firing("backup_failed:tenant:t_test_acme")
    assert alert is not None and alert.tenant_id is None
    assert alert.summary.startswith(f"Backup #{backup.pk} of Acme failed: The disk is full")
    sent = [m for m in mail.outbox if f"Backup #{backup.pk}" in m.subject]
    assert len(sent) == 1 and "ALERT" in sent[0].subject and named.admin.email in sent[0].to
    assert [entry["channel"] for entry in alert.notifications] == ["email"]

    # Space again: the next backup of the scope succeeds and the alert resolves (told once more).
    os.remove(Path(settings.MEDIA_ROOT, "t_test_acme", "whatsapp", "video.mp4"))
    # The space is free again: the failed backup's file is not only unlinked but closed.
    assert shutil.disk_usage(tiny_disk).used < 1024 * 1024
    again = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin)
    again.refresh_from_db()
    assert again.status == Status.SUCCEEDED and again.verified_at, (again.error, again.verification_error)
    alert_actions.check()
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED
    assert any("RESOLVED" in m.subject and f"Backup #{backup.pk}" in m.subject for m in mail.outbox)


def test_a_storage_that_fills_while_storing_keeps_neither_part_nor_key(named, settings, monkeypatch):
    """Simulated at the storage boundary (an S3 bucket or another file system filling up cannot be reached from a
    test): the store writes half the file under its final name, then fails with ENOSPC."""
    add_rows(named.acme)
    original = storage.BackupStore.put_file

    def fills_up(self, local_path, name):
        if not name.endswith(archive.SUFFIX):
            return original(self, local_path, name)
        final = self.local_root / name
        final.parent.mkdir(parents=True, exist_ok=True)
        final.write_bytes(Path(local_path).read_bytes()[: os.path.getsize(local_path) // 2])
        raise self._failed("writing", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(storage.BackupStore, "put_file", fills_up)
    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin)
    backup.refresh_from_db()
    assert backup.status == Status.FAILED and "No space left on device" in backup.error, backup.error
    assert files_under(settings.BACKUP_DIR) == ["keys/identity.age"]  # no half file, no key sidecar, no work
    assert firing("backup_failed:tenant:t_test_acme") is not None


def test_a_nightly_backup_that_does_not_verify_alerts_and_shows_on_the_page(named, settings, monkeypatch, client):
    add_rows(named.acme)
    original = storage.BackupStore.put_file

    def stores_damaged(self, local_path, name):
        stored = original(self, local_path, name)
        if name.endswith(archive.SUFFIX):  # the storage corrupts what it keeps (bit rot, a faulty disk)
            path = self.local_root / stored
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        return stored

    monkeypatch.setattr(storage.BackupStore, "put_file", stores_damaged)
    actions.nightly_backup()
    backup = Backup.objects.get(trigger=Backup.Trigger.SCHEDULED)
    assert backup.kind == Backup.Kind.FULL and backup.status == Status.SUCCEEDED and not backup.verified_at
    assert "sha256 is not the one recorded" in backup.verification_error
    alert = firing("backup_unverified:full")
    assert alert is not None and alert.summary.startswith(f"Backup #{backup.pk} (full) did not verify")
    assert any(f"Backup #{backup.pk} (full) did not verify" in m.subject for m in mail.outbox)

    client.force_login(named.admin)
    page = client.get("/platform/backups/").content.decode()
    assert 'data-testid="backup-alert"' in page and f"Backup #{backup.pk} (full) did not verify" in page

    # A later backup of the scope that verifies resolves it; the page no longer shows it.
    Backup.objects.create(kind="full", scope="full", status=Status.SUCCEEDED, storage_name="x",
                          finished_at=timezone.now(), verified_at=timezone.now())
    alert_actions.check()
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED
    assert 'data-testid="backup-alert"' not in client.get("/platform/backups/").content.decode()


def test_wal_waiting_unshipped_alerts_until_it_is_shipped(named, settings):
    """The `wal` process not running: the spool keeps what Postgres archived, and an alert says so."""
    spool = Path(settings.BACKUP_WAL_SPOOL_DIR)
    spool.mkdir(parents=True)
    segment = spool / "000000010000000000000007"
    segment.write_bytes(b"\0" * 8192)
    (spool / "000000010000000000000008.tmp").write_bytes(b"")  # a copy in progress is not counted
    alert_actions.check()
    assert firing("wal_not_shipped") is None  # just archived: the next shipment takes it

    waited = timezone.now().timestamp() - 5 * 60
    os.utime(segment, (waited, waited))
    alert_actions.check()
    alert = firing("wal_not_shipped")
    assert alert is not None and alert.details["files"] == 1 and alert.details["oldest_seconds"] >= 300
    assert any("waiting to be shipped" in m.subject for m in mail.outbox)

    assert wal.ship_wal() == 1
    alert_actions.check()
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED
