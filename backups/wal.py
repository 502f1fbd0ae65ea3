"""Point-in-time recovery: WAL archiving, weekly base backups, and building a new cluster at a given moment.

- The private Postgres that scripts/bootstrap.sh starts runs with `archive_mode = on`, `archive_timeout =
  BACKUP_ARCHIVE_TIMEOUT_SECONDS` (30) and an `archive_command` that copies each finished WAL segment into
  BACKUP_WAL_SPOOL_DIR (a plain copy, then a rename: Postgres waits for it, so it must be quick and never leave
  half a file). `archive_settings()` writes the same lines for scratch clusters.
- `ship_wal` (beat, every BACKUP_WAL_SHIP_SECONDS, on the `wal` queue that the Procfile's `wal` worker alone
  consumes, so a long backup never holds it up) compresses and encrypts each spooled segment into the backup
  storage as `wal/<segment>.zst.age` and then removes it from the spool.
- So when the machine is lost, what is lost is at most archive_timeout (the segment being written) + the shipping
  interval (a closed segment waiting in the spool) + one shipment: 30 + 10 + ~0.1 s (bench/backup_restore.py).
- A base backup (pg_basebackup, tar format with the WAL it needs) is a Backup of kind `base`, made by
  backups.runner like the others; beat takes one by BACKUP_BASE_SCHEDULE (weekly).
- `pitr_restore` unpacks the newest base backup taken before the target time into a new data directory, fetches
  and decrypts the archived segments after it, and starts Postgres there with `recovery_target_time`: a new cluster
  as the database was at that moment. The database it came from is not touched.

A Postgres that bootstrap did not start (an external server) is not reconfigured: `archive_enabled()` says so and
the README tells how to get the same with pgBackRest or WAL-G.
"""
import io
import logging
import os
import re
import shutil
import tarfile
import time
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

import psycopg
import zstandard
from celery import shared_task
from django.conf import settings

from core.errors import DomainError

from . import archive, contents, crypto, pg, storage
from .processes import give_to_postgres, start_cluster
from .errors import BackupError

log = logging.getLogger(__name__)

WAL_PREFIX = "wal"
BASE_PREFIX = "base"
WAL_SUFFIX = ".zst.age"
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_SHIPPABLE = re.compile(r"^[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?$|^[0-9A-F]{8}\.history$")
_STAMP = re.compile(r"(\d{8}T\d{6}Z)-\d+")


def is_shippable(name):
    """A finished WAL segment, partial segment, backup label or timeline history file (not a copy in progress)."""
    return bool(_SHIPPABLE.match(name))


def archive_settings(spool_dir, timeout_seconds=None):
    """postgresql.conf lines for WAL archiving into `spool_dir` (bootstrap.sh writes the same for its cluster)."""
    spool = str(spool_dir)
    if timeout_seconds is None:
        timeout_seconds = settings.BACKUP_ARCHIVE_TIMEOUT_SECONDS
    command = (f'test -f "{spool}/%f" && cmp -s "%p" "{spool}/%f" || '
               f'(cp "%p" "{spool}/%f.tmp" && mv "{spool}/%f.tmp" "{spool}/%f")')
    return (f"wal_level = replica\narchive_mode = on\narchive_timeout = {int(timeout_seconds)}\n"
            f"archive_command = '{command}'\n")


def archive_enabled(database=None):
    """(True, "") when the database's server archives WAL into our spool; else (False, why not)."""
    database = database or pg.Database.from_settings()
    try:
        with database.connect(autocommit=True) as conn:
            mode = conn.execute("SHOW archive_mode").fetchone()[0]
            command = conn.execute("SHOW archive_command").fetchone()[0]
    except Exception as exc:  # a database that cannot be reached has no archiving to speak of
        return False, f"the database cannot be reached ({exc})"
    if mode == "off":
        return False, ("this Postgres does not archive WAL (archive_mode is off): it was not started by "
                       "scripts/bootstrap.sh; see the README for pgBackRest or WAL-G")
    if str(Path(settings.BACKUP_WAL_SPOOL_DIR)) not in command:
        return False, f"this Postgres archives WAL elsewhere ({command[:80]})"
    return True, ""


# --- shipping ----------------------------------------------------------------------------------------------------

@shared_task(name="backups.tasks.ship_wal", ignore_result=True)
def ship_wal_task():
    if Path(settings.BACKUP_WAL_SPOOL_DIR).is_dir():
        ship_wal()


def ship_wal(spool_dir=None, store=None):
    """Compress, encrypt and store every finished segment in the spool, oldest first; returns how many."""
    spool = Path(spool_dir or settings.BACKUP_WAL_SPOOL_DIR)
    if not spool.is_dir():
        return 0
    names = sorted(name for name in os.listdir(spool) if _SHIPPABLE.match(name))
    if not names:
        return 0
    store = store or storage.store()
    sealing = crypto.sealing_for_new_file(store, one_off=False)
    compressor = zstandard.ZstdCompressor(level=settings.BACKUP_ZSTD_LEVEL)
    shipped = 0
    for name in names:
        path = spool / name
        with open(path, "rb") as handle:
            packed = compressor.compress(handle.read())
        work = storage.work_root() / f"wal-{name}.part"
        with open(work, "wb") as out:
            crypto.encrypt(io.BytesIO(packed), out, sealing.recipients)
        store.put_file(work, f"{WAL_PREFIX}/{name}{WAL_SUFFIX}")
        os.unlink(path)
        shipped += 1
    return shipped


# --- base backups ------------------------------------------------------------------------------------------------

def base_backup_parts(database, work, report):
    """pg_basebackup of the cluster (tar format, with the WAL needed to make it consistent): manifest, members."""
    enabled, why = archive_enabled(database)
    if not enabled:
        raise DomainError(BackupError.PITR_UNAVAILABLE, f"No point-in-time recovery: {why}.")
    target = work / "base"
    report(5, "pg_basebackup")
    pg.run([pg.tool("pg_basebackup", database), "-D", str(target), "-Ft", "-X", "fetch", "-c", "fast",
            "--no-sync", "-l", "switchboard base backup"], env=database.env(), what="pg_basebackup")
    label = _backup_label(target / "base.tar")
    manifest = contents.new_manifest("base", base=label, database={"name": database.name, "schemas": {}, "dumps": []})
    members = [(target / "base.tar", "base.tar")]
    if (target / "backup_manifest").exists():
        members.append((target / "backup_manifest", "backup_manifest"))
    return manifest, members


def _backup_label(base_tar):
    with tarfile.open(base_tar) as tar:
        text = tar.extractfile("backup_label").read().decode()
    label = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        label[key.strip().lower().replace(" ", "_")] = value.strip()
    match = re.search(r"\(file ([0-9A-F]{24})\)", label.get("start_wal_location", ""))
    label["start_segment"] = match.group(1) if match else ""
    return label


# --- recovery ----------------------------------------------------------------------------------------------------

def base_backups(store):
    """[(taken at, storage name)] of the stored base backups, oldest first."""
    found = []
    for name in store.listdir(BASE_PREFIX):
        match = _STAMP.search(os.path.basename(name))
        if match and name.endswith(archive.SUFFIX):
            taken = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt_timezone.utc)
            found.append((taken, name))
    return sorted(found)


def pitr_restore(target_time, data_dir, *, port, identity=None, start=True, bin_dir=None, store=None, spool_dir=None,
                 sha256_of_name=None, timeout=600, out=None):
    """Build a new cluster in `data_dir` (must not exist) as the archived database was at `target_time` (aware
    datetime; None = as late as the archive goes). Returns the new cluster's connection parameters."""
    say = out or (lambda text: log.info("%s", text))
    store = store or storage.store()
    data_dir = Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise DomainError(BackupError.PITR_UNAVAILABLE, f"{data_dir} is not empty: give a new folder.")
    candidates = [(taken, name) for taken, name in base_backups(store) if target_time is None or taken < target_time]
    if not candidates:
        raise DomainError(BackupError.PITR_UNAVAILABLE, "No base backup was taken before that time.")
    taken, name = candidates[-1]
    say(f"base backup {name} (taken {taken:%Y-%m-%d %H:%M:%S} UTC)")
    work_name = f"pitr-{os.getpid()}"
    work = storage.work_dir(work_name)
    try:
        path = store.fetch(name, work)
        identities = crypto.identities_for_reading(store, given=identity,
                                                   sidecar_name=name + crypto.KEY_SIDECAR_SUFFIX)
        archive.extract(path, work / "x", identities,
                        expected_sha256=sha256_of_name(name) if sha256_of_name else None)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tarfile.open(work / "x" / "base.tar") as tar:
            tar.extractall(data_dir, filter="tar")
        start_segment = _backup_label(work / "x" / "base.tar")["start_segment"]
    finally:
        storage.remove_work_dir(work_name)
    wal_dir = data_dir.parent / f"{data_dir.name}.wal"
    wal_dir.mkdir(exist_ok=True, mode=0o700)
    fetched = fetch_wal(store, wal_dir, start_segment, identities, spool_dir=spool_dir)
    say(f"{fetched} archived WAL files fetched into {wal_dir}")
    recovery = [f"restore_command = 'cp \"{wal_dir}/%f\" \"%p\"'", "archive_mode = off",
                f"port = {int(port)}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{data_dir}'",
                "recovery_target_action = 'promote'"]
    if target_time is not None:
        recovery.append(f"recovery_target_time = '{target_time.isoformat()}'")
    with open(data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write("\n# pitr_restore\n" + "\n".join(recovery) + "\n")
    (data_dir / "recovery.signal").touch()
    for stale in ("postmaster.pid", "postmaster.opts"):
        (data_dir / stale).unlink(missing_ok=True)
    os.chmod(data_dir, 0o700)
    give_to_postgres(data_dir)
    give_to_postgres(wal_dir)
    params = {"host": "127.0.0.1", "port": int(port)}
    if start:
        start_cluster(data_dir, bin_dir=bin_dir, timeout=timeout)
        wait_promoted(params, timeout=timeout)
        say(f"recovered cluster running on 127.0.0.1:{port} (data in {data_dir})")
    return params


def fetch_wal(store, wal_dir, start_segment, identities, spool_dir=None):
    """Decrypt every archived WAL file from `start_segment` on (and every timeline history) into `wal_dir`;
    segments still in the spool (not yet shipped) are copied too."""
    decompressor = zstandard.ZstdDecompressor()
    count = 0
    for name in store.listdir(WAL_PREFIX):
        segment = os.path.basename(name)[:-len(WAL_SUFFIX)]
        if not _wanted(segment, start_segment):
            continue
        out = io.BytesIO()
        crypto.decrypt(io.BytesIO(store.read_bytes(name)), out, identities)
        (Path(wal_dir) / segment).write_bytes(decompressor.decompress(out.getvalue()))
        count += 1
    spool = Path(spool_dir or settings.BACKUP_WAL_SPOOL_DIR)
    if spool.is_dir():
        for name in os.listdir(spool):
            if _SHIPPABLE.match(name) and _wanted(name, start_segment) and not (Path(wal_dir) / name).exists():
                shutil.copyfile(spool / name, Path(wal_dir) / name)
                count += 1
    return count


def _wanted(name, start_segment):
    if name.endswith(".history"):
        return True
    return name[:24] >= start_segment[:24] if start_segment else True


def wait_promoted(params, timeout=600):
    """Wait until the recovering cluster has replayed to its target and accepts writes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(host=params["host"], port=params["port"], user="postgres", dbname="postgres",
                                 autocommit=True, connect_timeout=5) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except psycopg.OperationalError as exc:
            last = exc
        time.sleep(0.5)
    raise DomainError(BackupError.PITR_UNAVAILABLE, f"The recovered cluster did not finish recovery: {last}")
