"""Where backups are kept: the local folder BACKUP_DIR, or an S3-compatible bucket named by BACKUP_STORAGE_URL
(django-storages' S3 backend on boto3). A file appears under its final name only once complete: locally it is
written beside and renamed into place, in S3 a multipart upload is invisible until completed.

Work in progress (a dump being made, a file being restored) lives in BACKUP_DIR/.work/<what>-<id>/, whatever the
storage; the sweeper removes what a dead worker left there.
"""
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage

from core.errors import DomainError

from .errors import BackupError

FILE_MODE = 0o600
DIR_MODE = 0o700
CHUNK = 8 * 1024 * 1024


def work_root():
    path = Path(settings.BACKUP_DIR) / ".work"
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    return path


def work_dir(name):
    """A fresh private folder for one piece of work (emptied first: a rerun never sees a dead run's files)."""
    path = work_root() / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=DIR_MODE)
    return path


def remove_work_dir(name):
    shutil.rmtree(work_root() / name, ignore_errors=True)


def parse_s3_url(url):
    """s3://[key:secret@]bucket[/prefix][?endpoint_url=…&region=…&addressing_style=path] → S3Storage options."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.hostname:
        raise ValueError(f"BACKUP_STORAGE_URL must look like s3://bucket/prefix, not {url!r}")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options = {"bucket_name": parts.hostname, "location": parts.path.strip("/"), "file_overwrite": True,
               "default_acl": None, "querystring_auth": False}
    if parts.username:
        options["access_key"] = unquote(parts.username)
        options["secret_key"] = unquote(parts.password or "")
    if "endpoint_url" in query:
        options["endpoint_url"] = query["endpoint_url"]
    if "region" in query:
        options["region_name"] = query["region"]
    if "addressing_style" in query:
        options["addressing_style"] = query["addressing_style"]
    return options


class BackupStore:
    """A thin face over the Django storage: whole files in and out, atomically."""

    def __init__(self, url=None, local_dir=None):
        self.url = settings.BACKUP_STORAGE_URL if url is None else url
        if self.url:
            from storages.backends.s3 import S3Storage  # here: boto3 loads only where S3 is configured

            self.storage = S3Storage(**parse_s3_url(self.url))
            self.local_root = None
        else:
            self.local_root = Path(local_dir or settings.BACKUP_DIR)
            self.storage = FileSystemStorage(location=str(self.local_root), file_permissions_mode=FILE_MODE,
                                             directory_permissions_mode=DIR_MODE)

    @property
    def is_local(self):
        return self.local_root is not None

    def describe(self):
        if self.is_local:
            return str(self.local_root)
        parts = urlsplit(self.url)
        return f"s3://{parts.hostname}{parts.path}"

    def _failed(self, doing, exc):
        return DomainError(BackupError.STORAGE_FAILED, f"The backup storage ({self.describe()}) failed while "
                           f"{doing}: {exc}")

    def put_file(self, local_path, name):
        """Store the finished file `local_path` under `name` (the local file is moved or uploaded)."""
        try:
            if self.is_local:
                final = self.local_root / name
                final.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
                os.chmod(local_path, FILE_MODE)
                try:
                    os.replace(local_path, final)  # same file system: atomic
                except OSError:
                    partial = final.with_name(final.name + ".part")
                    try:
                        shutil.copyfile(local_path, partial)
                        os.chmod(partial, FILE_MODE)
                        os.replace(partial, final)
                    except BaseException:
                        partial.unlink(missing_ok=True)  # another file system filled up: no half file stays
                        raise
                    os.unlink(local_path)
                return name
            with open(local_path, "rb") as handle:
                return self.storage.save(name, File(handle, name=os.path.basename(name)))
        except OSError as exc:
            raise self._failed("writing", exc) from exc
        except Exception as exc:
            if type(exc).__module__.startswith(("botocore", "boto3", "s3transfer")):
                raise self._failed("uploading", exc) from exc
            raise

    def local_path(self, name):
        """The file's path when the storage is this machine's disk, else None."""
        return self.local_root / name if self.is_local else None

    def fetch(self, name, into_dir):
        """A local path to read the stored file from: itself when local, else a downloaded copy in `into_dir`."""
        if not self.exists(name):
            raise DomainError(BackupError.NOT_RESTORABLE, f"The backup file {name} is not in the storage.")
        if self.is_local:
            return self.local_root / name
        target = Path(into_dir) / os.path.basename(name)
        try:
            with self.storage.open(name, "rb") as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
        except Exception as exc:
            if isinstance(exc, OSError) or type(exc).__module__.startswith(("botocore", "boto3", "s3transfer")):
                raise self._failed("downloading", exc) from exc
            raise
        return target

    def exists(self, name):
        try:
            return self.storage.exists(name)
        except Exception as exc:
            if type(exc).__module__.startswith(("botocore", "boto3")):
                raise self._failed("looking up a file", exc) from exc
            raise

    def read_bytes(self, name):
        with self.storage.open(name, "rb") as handle:
            return handle.read()

    def write_bytes(self, name, data):
        with tempfile.NamedTemporaryFile(dir=work_root(), delete=False) as handle:
            handle.write(data)
        try:
            return self.put_file(handle.name, name)
        finally:
            if os.path.exists(handle.name):
                os.unlink(handle.name)

    def delete(self, name):
        if name and self.exists(name):
            self.storage.delete(name)

    def size(self, name):
        return self.storage.size(name)

    def listdir(self, prefix):
        """File names (full names, sorted) directly under `prefix`."""
        try:
            _, files = self.storage.listdir(prefix)
        except FileNotFoundError:
            return []
        return sorted(f"{prefix.rstrip('/')}/{name}" for name in files if not name.endswith(".part"))


def store():
    return BackupStore()
