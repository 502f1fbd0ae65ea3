"""manage.py restore_backup ID [--identity-file key.txt] [--target-database NAME] [--replace [--force]]
manage.py restore_backup --file backup.tar.zst.age --sha256 HEX …   (a bare machine: no database to look ID up in)

A full restore, run with the system stopped (README: Operations, maintenance steps). The backup is read back (its
sha256 checked, decrypted, unpacked), restored into a new database (`<name>_restored_<time>` unless named) and
compared with its manifest (row counts of every table of every schema, migration state). Without --replace it stops
there and says how to switch. With --replace the live database is renamed `<name>_pre_<time>`, the restored one takes
its name, and WHATSAPP_STORE_DIR and MEDIA_ROOT are swapped for the backup's (the old ones kept beside, `.pre-<time>`).
"""
import shutil
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from backups import pg, runner, storage
from backups.models import Backup
from core.errors import DomainError


class Command(BaseCommand):
    help = "Restore a full backup into a new database, verify it, and optionally swap it in (system stopped)."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", nargs="?", type=int)
        parser.add_argument("--file", help="The backup file itself (when the database to look the ID up is gone)")
        parser.add_argument("--sha256", help="With --file: the checksum recorded when it was made")
        parser.add_argument("--identity-file", help="age identity file, when backups go to BACKUP_AGE_RECIPIENTS")
        parser.add_argument("--target-database", help="Name of the database to create (default <name>_restored_<time>)")
        parser.add_argument("--replace", action="store_true",
                            help="Swap the restored database and files in for the live ones (system stopped!)")
        parser.add_argument("--force", action="store_true", help="With --replace: end other sessions on the database")

    def handle(self, *args, backup_id=None, file=None, sha256=None, identity_file=None, target_database=None,
               replace=False, force=False, **options):
        if bool(backup_id) == bool(file):
            raise CommandError("Give a backup ID or --file.")
        identity = open(identity_file).read() if identity_file else None
        stamp = timezone.now().strftime("%Y%m%d%H%M%S")
        if file:
            path = Path(file).resolve()
            store = storage.BackupStore(url="", local_dir=path.parent)
            backup = Backup(pk=0, kind=Backup.Kind.FULL, storage_name=path.name, sha256=sha256 or "",
                            status="succeeded")
        else:
            backup = Backup.objects.filter(pk=backup_id).first()
            if backup is None:
                raise CommandError(f"No backup #{backup_id}.")
            store = storage.store()
        if backup.kind != Backup.Kind.FULL:
            raise CommandError("That is not a full backup: restore a tenant backup from the Backups page or the API.")
        live = pg.Database.from_settings()
        if replace and not force:
            self._refuse_while_used(live)  # before the long part: found at the swap it would have been for nothing
        work_name = f"full-restore-{stamp}"
        work = storage.work_dir(work_name)
        target_name = target_database or f"{live.name[:40]}_restored_{stamp}"
        try:
            self.stdout.write(f"Reading {backup.storage_name} …")
            manifest = runner.open_backup(backup, work / "x", identity=identity, store=store)
            if manifest.get("kind") != "full":
                raise CommandError("That file is not a full backup.")
            self.stdout.write(f"Restoring into the new database {target_name} …")
            target = pg.create_database(live, target_name)
            try:
                runner.restore_full_database(target, work / "x", manifest)
                problems = [problem for schema, expected in manifest["database"]["schemas"].items()
                            for problem in runner.compare_schema(target, schema, expected)]
                problems += runner.compare_files(work / "x", manifest)
                runner.raise_if(problems)
            except Exception:
                pg.drop_database(live, target_name)
                raise
            tables = sum(len(s["tables"]) for s in manifest["database"]["schemas"].values())
            self.stdout.write(self.style.SUCCESS(
                f"Restored and verified: {len(manifest['database']['schemas'])} schemas, {tables} tables, row counts "
                f"and migrations as in the manifest."))
            if not replace:
                self.stdout.write(f"The live database is untouched. To switch, stop every process and run again with "
                                  f"--replace, or point DATABASE_URL at {target_name}. Device keys and media are in "
                                  f"{work / 'x'} until this command ends: use --replace to put them in place.")
                return
            self._swap(live, target_name, stamp, force)
            self._swap_files(work / "x", stamp)
            self.stdout.write(self.style.SUCCESS(f"Swapped in. The previous database is {live.name}_pre_{stamp}; drop "
                                                 "it once the system runs well."))
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        finally:
            storage.remove_work_dir(work_name)

    def _refuse_while_used(self, live, restored_name=None):
        _let_go(live)
        with live.named("postgres").connect(autocommit=True) as conn:
            others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                                  "pg_backend_pid()", [live.name]).fetchone()[0]
        if others:
            kept = f" The restored database {restored_name} is kept: drop it or run again." if restored_name else ""
            raise CommandError(f"{others} session(s) still use {live.name}: stop every process (web, worker, "
                               f"whatsapp, beat) first, or add --force to end them.{kept}")

    def _swap(self, live, restored_name, stamp, force):
        if not force:
            self._refuse_while_used(live, restored_name)
        _let_go(live)
        admin = live.named("postgres")
        with admin.connect(autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                         "pg_backend_pid()", [live.name])
            conn.execute(f"ALTER DATABASE {pg.quote_ident(live.name)} RENAME TO "
                         f"{pg.quote_ident(live.name[:40] + '_pre_' + stamp)}")
            conn.execute(f"ALTER DATABASE {pg.quote_ident(restored_name)} RENAME TO {pg.quote_ident(live.name)}")

    def _swap_files(self, unpacked, stamp):
        for part, setting in (("store", settings.WHATSAPP_STORE_DIR), ("media", settings.MEDIA_ROOT)):
            target = Path(setting)
            if target.exists():
                target.rename(target.with_name(f"{target.name}.pre-{stamp}"))
            restored = Path(unpacked) / part
            if restored.is_dir():
                shutil.move(str(restored), str(target))
            else:
                target.mkdir(parents=True)


def _let_go(live):
    """This process's own connections to the live database end (the pool's too: they would count as users)."""
    connection.close()
    if connection.alias in getattr(connection, "_connection_pools", {}):  # asking for .pool would open one
        connection.close_pool()
