"""Point-in-time recovery end to end on a scratch cluster of the system's binaries: WAL archived into a spool by
archive_command, a base backup, rows written before and after a moment T, the WAL shipped (compressed, encrypted)
to the backup storage, and `manage.py pitr_restore --target-time T` builds a new cluster where the rows before T are
present and the rows after T absent."""
import shutil
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from backups import processes, runner, storage, wal
from backups.models import Backup, Status
from backups.tests.cluster import ScratchCluster, private_dir

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def archiving_cluster(settings):
    spool = private_dir("sb-wal-spool-")
    settings.BACKUP_WAL_SPOOL_DIR = str(spool)
    cluster = ScratchCluster(wal.archive_settings(spool, timeout_seconds=60)).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(spool, ignore_errors=True)


def wait_archived(cluster, segment, spool, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (Path(spool) / segment).exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"{segment} was not archived: {sorted(p.name for p in Path(spool).iterdir())}")


def switch_wal(cluster, spool):
    segment = cluster.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    cluster.sql("SELECT pg_switch_wal()")
    wait_archived(cluster, segment, spool)


def test_recovery_to_a_moment_keeps_what_was_before_it_and_nothing_after(archiving_cluster, settings, named):
    cluster, spool = archiving_cluster, settings.BACKUP_WAL_SPOOL_DIR
    cluster.sql("CREATE TABLE notes (id serial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp())")
    cluster.sql("INSERT INTO notes (note) VALUES ('before the base backup')")
    assert wal.archive_enabled(cluster.database()) == (True, "")

    base = Backup.objects.create(kind="base", scope="base", status=Status.RUNNING, started_at=timezone.now())
    runner.make(base, lambda *args, **kwargs: None, database=cluster.database())
    base.refresh_from_db()
    assert base.status == Status.SUCCEEDED and base.manifest["base"]["start_segment"]
    cluster.sql("INSERT INTO notes (note) VALUES ('after the base backup, before T')")
    time.sleep(1.2)
    target = cluster.sql("SELECT clock_timestamp()")[0][0]
    time.sleep(1.2)
    cluster.sql("INSERT INTO notes (note) VALUES ('after T')")
    switch_wal(cluster, spool)

    shipped = wal.ship_wal()
    assert shipped >= 1 and not [p for p in Path(spool).iterdir() if not p.name.endswith(".tmp")]
    names = storage.store().listdir(wal.WAL_PREFIX)
    assert names and all(name.endswith(".zst.age") for name in names)
    cluster.crash()  # the original is gone: recovery uses only the backup storage

    recovered = private_dir("sb-pitr-") / "data"
    cluster.others.append(recovered)
    port = processes.free_port()
    call_command("pitr_restore", "--target-time", target.isoformat(), "--data-dir", str(recovered),
                 "--port", str(port))
    notes = [row[0] for row in cluster.sql("SELECT note FROM notes ORDER BY id", port=port)]
    assert notes == ["before the base backup", "after the base backup, before T"]


def test_wal_is_archived_and_shipped_often_enough_for_a_one_minute_rpo(settings):
    """RPO when the machine is lost ≤ archive_timeout + the shipping interval (+ one shipment, ~0.1 s): below 60 s,
    and the shipping runs on a queue that one Procfile process alone consumes, so a long backup on `default` never
    holds it up. bench/backup_restore.py measures it (rpo_max_s)."""
    assert "archive_timeout = 30\n" in wal.archive_settings("/spool")
    assert settings.BACKUP_ARCHIVE_TIMEOUT_SECONDS + settings.BACKUP_WAL_SHIP_SECONDS < 55
    entry = settings.CELERY_BEAT_SCHEDULE["ship-wal"]
    assert entry["schedule"].total_seconds() == settings.BACKUP_WAL_SHIP_SECONDS
    queue = entry["options"]["queue"]
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text().splitlines()
    consumers = {line.split(":")[0]: line.split(" -Q ")[1].split()[0].split(",") for line in procfile if " -Q " in line}
    assert [name for name, queues in consumers.items() if queue in queues] == ["wal"]
    assert consumers["wal"] == [queue] and queue != settings.CELERY_TASK_DEFAULT_QUEUE
