"""Postgres server processes of our own (scratch clusters, recovered clusters): started and stopped as the owner of
the cluster, which as root is the postgres system user (initdb and postgres refuse root). No Django here: benchmarks
start a cluster before Django is set up against it."""
import os
import socket
import subprocess
from pathlib import Path

from core.errors import DomainError

from . import pg
from .errors import BackupError


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(args, **kwargs):
    """Run a server binary as the owner of the cluster: as root, the postgres system user (initdb and postgres
    refuse root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
        kwargs.setdefault("cwd", "/")
    return subprocess.run(args, **kwargs)


def give_to_postgres(path):
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True)


def start_cluster(data_dir, *, bin_dir=None, timeout=600, log_file=None):
    bin_dir = Path(bin_dir or pg.bin_dir())
    log_file = log_file or Path(data_dir).parent / f"{Path(data_dir).name}.log"
    if os.geteuid() == 0:
        Path(log_file).touch()
        give_to_postgres(log_file)
    done = as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-w", "-t",
                        str(timeout), "start"], capture_output=True, text=True)
    if done.returncode != 0:
        tail = Path(log_file).read_text()[-2000:] if Path(log_file).exists() else ""
        raise DomainError(BackupError.PITR_UNAVAILABLE, f"The recovered cluster did not start: {done.stderr}{tail}")


def stop_cluster(data_dir, *, bin_dir=None, mode="fast"):
    bin_dir = Path(bin_dir or pg.bin_dir())
    as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", mode, "-w", "stop"], capture_output=True)
