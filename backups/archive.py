"""The backup file: a tar stream, compressed with zstd, encrypted with age, hashed as it is written.

    tarfile ("w|") -> zstd stream writer -> pipe -> age (pyrage, another thread) -> sha256 -> file

Reading is the same in reverse; the sha256 of the bytes read is compared with the recorded one before anything
extracted is used, and age authenticates every chunk, so a damaged or truncated file is refused.
"""
import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import zstandard

from core.errors import DomainError

from . import crypto
from .errors import BackupError

CHUNK = 1024 * 1024
SUFFIX = ".tar.zst.age"


class _HashingWriter:
    def __init__(self, handle, on_bytes=None):
        self.handle, self.digest, self.size, self.on_bytes = handle, hashlib.sha256(), 0, on_bytes
        self.error = None  # what the file system said (pyrage hands its caller only the text)

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        if self.on_bytes:
            self.on_bytes(self.size)
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self):
        try:
            self.handle.flush()
        except OSError as exc:
            self.error = exc
            raise


class _HashingReader:
    def __init__(self, handle, on_bytes=None):
        self.handle, self.digest, self.size, self.on_bytes = handle, hashlib.sha256(), 0, on_bytes

    def read(self, n=-1):
        data = self.handle.read(n)
        self.digest.update(data)
        self.size += len(data)
        if self.on_bytes and data:
            self.on_bytes(self.size)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _Counting:
    """A file being archived: counts the bytes read for the writer's progress."""

    def __init__(self, handle, writer):
        self.handle, self.writer = handle, writer

    def read(self, n=-1):
        data = self.handle.read(n)
        self.writer.input_bytes += len(data)
        if self.writer.on_input and data:
            self.writer.on_input(self.writer.input_bytes)
        return data


class _Thread(threading.Thread):
    """Runs `target`, keeping its exception for the caller, and closes `closing` when done either way."""

    def __init__(self, target, closing):
        super().__init__(daemon=True)
        self._target_fn, self._closing, self.error = target, closing, None

    def run(self):
        try:
            self._target_fn()
        except BaseException as exc:  # handed to the joining thread
            self.error = exc
        finally:
            self._closing.close()


class ArchiveWriter:
    """`with ArchiveWriter(path, sealing) as archive: archive.add_file(...)`; then `.sha256` and `.size`."""

    def __init__(self, path, sealing, *, compress=True, level=3, on_bytes=None, on_input=None):
        self.path, self.sealing, self.compress, self.level = Path(path), sealing, compress, level
        self.on_bytes = on_bytes
        self.on_input = on_input  # called with the bytes of the files read so far
        self.input_bytes = 0
        self.sha256 = self.size = None

    def __enter__(self):
        read_fd, write_fd = os.pipe()
        self._pipe_in = os.fdopen(write_fd, "wb", buffering=CHUNK)
        pipe_out = os.fdopen(read_fd, "rb", buffering=CHUNK)
        self._file = open(self.path, "wb")
        os.chmod(self.path, 0o600)
        self._hashing = _HashingWriter(self._file, self.on_bytes)

        def encrypt():
            crypto.encrypt(pipe_out, self._hashing, self.sealing.recipients)

        self._encrypter = _Thread(encrypt, pipe_out)
        self._encrypter.start()
        if self.compress:
            self._zstd = zstandard.ZstdCompressor(level=self.level, threads=-1).stream_writer(
                self._pipe_in, closefd=False)
            sink = self._zstd
        else:
            self._zstd, sink = None, self._pipe_in
        self.tar = tarfile.open(fileobj=sink, mode="w|", bufsize=CHUNK, format=tarfile.PAX_FORMAT)
        return self

    def add_file(self, local_path, arcname):
        info = self.tar.gettarinfo(str(local_path), arcname=arcname)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with open(local_path, "rb") as handle:
            self.tar.addfile(info, _Counting(handle, self))

    def add_tree(self, root, arcname):
        """Every regular file under `root` (symlinks and sockets skipped), in a stable order."""
        root = Path(root)
        if not root.is_dir():
            return 0
        count = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    self.add_file(path, f"{arcname}/{path.relative_to(root).as_posix()}")
                    count += 1
        return count

    def add_bytes(self, data, arcname):
        info = tarfile.TarInfo(arcname)
        info.size, info.mode = len(data), 0o600
        self.tar.addfile(info, io.BytesIO(data))

    def __exit__(self, exc_type, exc, tb):
        try:
            try:
                self.tar.close()
                if self._zstd is not None:
                    self._zstd.close()
            finally:
                # Each step even when the one before raised: a pipe whose reader died (a full disk) fails to close,
                # and a file left open here would keep the deleted partial file's space taken until the worker ends.
                try:
                    self._pipe_in.close()
                finally:
                    self._encrypter.join()
                    self._file.close()
        except OSError:
            if self._encrypter.error is None:
                raise
        # The writing thread's error is the cause (a full disk, say); the broken pipe this side saw is its effect.
        if self._encrypter.error is not None and (exc_type is None or issubclass(exc_type, BrokenPipeError)):
            if self._hashing.error is not None:
                raise self._hashing.error from self._encrypter.error
            raise self._encrypter.error
        self.sha256, self.size = self._hashing.digest.hexdigest(), self._hashing.size
        return False


def extract(path, into_dir, identities, *, expected_sha256=None, compressed=True, on_bytes=None):
    """Decrypt, decompress and unpack the file at `path` into `into_dir`. Refuses (DomainError) a file whose
    sha256 differs from `expected_sha256`, that the identities cannot open, or that is damaged; the caller then
    discards `into_dir`."""
    into_dir = Path(into_dir)
    with open(path, "rb") as handle:
        hashing = _HashingReader(handle, on_bytes)
        read_fd, write_fd = os.pipe()
        pipe_in = os.fdopen(write_fd, "wb", buffering=CHUNK)
        pipe_out = os.fdopen(read_fd, "rb", buffering=CHUNK)
        decrypter = _Thread(lambda: crypto.decrypt(hashing, pipe_in, identities), pipe_in)
        decrypter.start()
        unpack_error = None
        try:
            source = zstandard.ZstdDecompressor().stream_reader(pipe_out, read_size=CHUNK) if compressed else pipe_out
            with tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK) as tar:
                tar.extractall(into_dir, filter="data")
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
            unpack_error = exc
        finally:
            # Whatever stopped the reading, let the decrypting thread finish (it may block on a full pipe).
            _drain(pipe_out)
            decrypter.join()
            pipe_out.close()
        # Read to the end even when the archive ended early, so the digest covers the whole file.
        while hashing.read(CHUNK):
            pass
    if decrypter.error is not None:
        actual = hashing.digest.hexdigest()
        if isinstance(decrypter.error, DomainError) and expected_sha256 and actual != expected_sha256:
            raise _checksum_error(expected_sha256, actual)
        raise decrypter.error
    if expected_sha256 and hashing.digest.hexdigest() != expected_sha256:
        raise _checksum_error(expected_sha256, hashing.digest.hexdigest())
    if unpack_error is not None:
        raise DomainError(BackupError.CORRUPTED, f"The backup could not be unpacked: {unpack_error}") from unpack_error
    return hashing.digest.hexdigest()


def _drain(pipe_out):
    try:
        while pipe_out.read(CHUNK):
            pass
    except (OSError, ValueError):
        pass


def _checksum_error(expected, actual):
    return DomainError(BackupError.CHECKSUM_MISMATCH, "The backup file is damaged: its sha256 is not the one recorded "
                       "when it was made. Nothing was restored.", {"expected": expected, "actual": actual})


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
