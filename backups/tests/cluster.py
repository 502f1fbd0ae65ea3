"""A scratch Postgres cluster of the system's binaries in a temporary folder on a free port, for tests and benchmarks
that need server settings the shared server must keep (WAL archiving, a tiny lock table). As root the cluster
belongs to the postgres system user (initdb refuses root), so its folder is made readable to it."""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from backups import pg, processes
from backups.processes import free_port


def newest_bin_dir():
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not dirs:
        raise RuntimeError("no /usr/lib/postgresql/*/bin")
    return dirs[-1]


class ScratchCluster:
    def __init__(self, settings="", bin_dir=None):
        self.bin_dir = Path(bin_dir or newest_bin_dir())
        self.root = Path(tempfile.mkdtemp(prefix="sb-scratch-pg-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.extra_settings = settings
        self.others = []  # data folders of clusters recovered from this one

    def start(self):
        processes.give_to_postgres(self.root)
        done = processes.as_postgres([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                                "--auth=trust", "--encoding=UTF8", "--no-locale"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stdout + done.stderr)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = "
                       f"'{self.root}'\nfsync = off\n{self.extra_settings}\n")
        processes.start_cluster(self.data, bin_dir=self.bin_dir, timeout=60, log_file=self.root / "server.log")
        return self

    def database(self, name="postgres"):
        return pg.Database(host="127.0.0.1", port=self.port, user="postgres", password="", name=name)

    def connect(self, name="postgres", port=None):
        return psycopg.connect(host="127.0.0.1", port=port or self.port, user="postgres", dbname=name,
                               autocommit=True)

    def sql(self, statement, name="postgres", port=None):
        with self.connect(name, port) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else None

    def crash(self):
        processes.stop_cluster(self.data, bin_dir=self.bin_dir, mode="immediate")

    def stop(self):
        for data in [self.data, *self.others]:
            if (Path(data) / "postmaster.pid").exists():
                processes.stop_cluster(data, bin_dir=self.bin_dir, mode="immediate")
        time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
        for data in self.others:
            shutil.rmtree(Path(data).parent, ignore_errors=True)


def private_dir(prefix):
    """A folder the postgres user can write (archive spools, recovered clusters)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    processes.give_to_postgres(path)
    return path


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)
