"""manage.py pitr_restore --target-time "2026-01-31 14:05:00+00" --data-dir /srv/pg-recovered [--port 54330]

Builds a new Postgres cluster as the archived database was at that moment (README: Operations, point-in-time
recovery). The running database is not touched; point DATABASE_URL at the new cluster (or dump what you need from
it) once you have checked it."""
from datetime import timezone as dt_timezone

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils.dateparse import parse_datetime

from backups import processes, wal
from backups.models import Backup
from core.errors import DomainError


class Command(BaseCommand):
    help = "Build a new Postgres cluster at a point in time from the base backups and archived WAL."

    def add_arguments(self, parser):
        parser.add_argument("--target-time", help="ISO time (UTC unless it says otherwise); omit for the latest")
        parser.add_argument("--data-dir", required=True, help="A new, empty folder for the recovered cluster")
        parser.add_argument("--port", type=int, default=0, help="Port of the recovered cluster (default: a free one)")
        parser.add_argument("--identity-file", help="age identity file, when backups go to BACKUP_AGE_RECIPIENTS")
        parser.add_argument("--no-start", action="store_true", help="Prepare the folder but do not start it")

    def handle(self, *args, target_time=None, data_dir, port, identity_file=None, no_start=False, **options):
        target = None
        if target_time:
            target = parse_datetime(target_time)
            if target is None:
                raise CommandError(f"Not a time: {target_time!r} (use e.g. 2026-01-31T14:05:00+00:00)")
            if target.tzinfo is None:
                target = target.replace(tzinfo=dt_timezone.utc)
        identity = open(identity_file).read() if identity_file else None
        port = port or processes.free_port()
        try:
            params = wal.pitr_restore(target, data_dir, port=port, identity=identity, start=not no_start,
                                      out=self.stdout.write, sha256_of_name=_recorded_sha256)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(
            f"Recovered cluster in {data_dir}: postgres://postgres@{params['host']}:{params['port']}/<database>"))


def _recorded_sha256(storage_name):
    """The base backup's recorded sha256, when the database that records it still answers (it may be the one being
    recovered from); without it the file is still authenticated by age."""
    try:
        return Backup.objects.filter(storage_name=storage_name).values_list("sha256", flat=True).first() or None
    except DatabaseError:
        return None
