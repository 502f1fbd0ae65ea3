"""Postgres' own tools (pg_dump, pg_restore, psql, pg_basebackup) and the catalogue queries around them.

- The client binaries are the ones of the server's major version (/usr/lib/postgresql/<N>/bin), or
  BACKUP_PG_BIN_DIR: an older pg_dump refuses a newer server, and a newer one writes dumps an older
  pg_restore cannot read.
- Everything a backup reads comes from one snapshot, exported by a transaction that stays open while the dumps
  and the row counts import it, so the manifest's counts are exactly the dump's rows.
- pg_dump locks every table it dumps until it ends. One pg_dump of thousands of tenant schemas needs more locks
  than the shared lock table holds (max_locks_per_transaction x max_connections: django-tenants #943) and fails
  with "out of shared memory". A full backup is therefore several pg_dumps, each of a batch of schemas that
  stays within a quarter of the lock table, all reading the same snapshot.
"""
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection

from core.errors import DomainError

from .errors import BackupError

SYSTEM_SCHEMAS = ("information_schema", "pg_catalog", "pg_toast")
COUNT_TABLES_PER_QUERY = 400


@dataclass(frozen=True)
class Database:
    """Where to connect: the libpq parameters of one database."""

    host: str
    port: int
    user: str
    password: str
    name: str

    @classmethod
    def from_settings(cls, name=None, db_settings=None):
        db = db_settings or connection.settings_dict
        return cls(host=db.get("HOST") or "127.0.0.1", port=int(db.get("PORT") or 5432), user=db.get("USER") or "",
                   password=db.get("PASSWORD") or "", name=name or db["NAME"])

    def named(self, name):
        return Database(self.host, self.port, self.user, self.password, name)

    def env(self):
        env = {**os.environ, "PGHOST": self.host, "PGPORT": str(self.port), "PGDATABASE": self.name,
               "PGUSER": self.user, "PGAPPNAME": "switchboard-backups"}
        if self.password:
            env["PGPASSWORD"] = self.password
        else:
            env.pop("PGPASSWORD", None)
        return env

    def connect(self, **kwargs):
        return psycopg.connect(host=self.host, port=self.port, user=self.user or None, password=self.password or None,
                               dbname=self.name, application_name="switchboard-backups", **kwargs)


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


# --- binaries ----------------------------------------------------------------------------------------------------

def server_major(database):
    with database.connect(autocommit=True) as conn:
        return conn.info.server_version // 10000


def bin_dir(database=None):
    if settings.BACKUP_PG_BIN_DIR:
        return Path(settings.BACKUP_PG_BIN_DIR)
    major = server_major(database or Database.from_settings())
    exact = Path(f"/usr/lib/postgresql/{major}/bin")
    if (exact / "pg_dump").exists():
        return exact
    newer = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()
                    and int(p.parent.name) >= major), key=lambda p: int(p.parent.name))
    if newer:
        return newer[0]
    found = shutil.which("pg_dump")
    if found:
        return Path(found).parent
    raise DomainError(BackupError.DUMP_FAILED, f"No pg_dump for Postgres {major}: install postgresql-client-{major} "
                      "or set BACKUP_PG_BIN_DIR.")


def tool(name, database=None):
    return str(bin_dir(database) / name)


def run(args, *, env, what, stdout=None, timeout=None):
    done = subprocess.run(args, env=env, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[-2000:]
        raise DomainError(BackupError.DUMP_FAILED, f"{what} failed: {message}", {"command": os.path.basename(args[0])})
    return done


# --- catalogue ---------------------------------------------------------------------------------------------------

def schemas_and_tables(cursor):
    """{schema: [table, …]} of every user schema (empty ones included), tables and partitioned tables."""
    cursor.execute(
        "SELECT n.nspname, c.relname FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
        "AND c.relkind IN ('r', 'p') WHERE n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%' "
        "ORDER BY n.nspname, c.relname", [list(SYSTEM_SCHEMAS)])
    found = {}
    for schema, table in cursor.fetchall():
        found.setdefault(schema, [])
        if table is not None:
            found[schema].append(table)
    return found


def lock_budget(cursor):
    """Tables one pg_dump may lock: a quarter of the shared lock table, which every other session shares."""
    cursor.execute("SELECT current_setting('max_locks_per_transaction')::int, current_setting('max_connections')::int,"
                   " current_setting('max_prepared_transactions')::int")
    per_transaction, connections, prepared = cursor.fetchone()
    return max(8, per_transaction * (connections + prepared) // 4)


def batches(tables_by_schema, budget, first=("public",)):
    """Schemas grouped so each group's tables stay within `budget` (a schema larger than it is a group alone);
    the schemas in `first` come first, each alone (restored before the others: tenant tables point into them)."""
    groups = [[schema] for schema in first if schema in tables_by_schema]
    current, current_tables = [], 0
    for schema, tables in tables_by_schema.items():
        if schema in first:
            continue
        if current and current_tables + len(tables) > budget:
            groups.append(current)
            current, current_tables = [], 0
        current.append(schema)
        current_tables += len(tables)
    if current:
        groups.append(current)
    return groups


def migration_state(cursor, schema):
    """[[app, name], …] recorded in the schema's django_migrations (empty when it has none)."""
    cursor.execute("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'django_migrations'", [schema])
    if cursor.fetchone() is None:
        return []
    cursor.execute(f"SELECT app, name FROM {quote_ident(schema)}.django_migrations ORDER BY app, name")
    return [list(row) for row in cursor.fetchall()]


class Snapshot:
    """A read-only transaction whose snapshot other sessions import: `with Snapshot(db) as snap:` … `snap.id`."""

    def __init__(self, database):
        self.database = database

    def __enter__(self):
        self.conn = self.database.connect(autocommit=False)
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True
        self.cursor = self.conn.cursor()
        self.cursor.execute("SELECT pg_export_snapshot()")
        self.id = self.cursor.fetchone()[0]
        return self

    def __exit__(self, *exc):
        try:
            self.conn.rollback()
        finally:
            self.conn.close()
        return False

    def count_rows(self, tables, on_progress=None, per_query=COUNT_TABLES_PER_QUERY):
        return count_rows(self.database, tables, snapshot_id=self.id, on_progress=on_progress, per_query=per_query)


def count_rows(database, tables, *, snapshot_id=None, on_progress=None, per_query=COUNT_TABLES_PER_QUERY):
    """{"schema.table": rows} of [(schema, table), …] (as of the snapshot, when given), counted in slices, each in
    a transaction of its own, so the locks never pile up."""
    counts = {}
    with database.connect(autocommit=False) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        for start in range(0, len(tables), per_query):
            chunk = tables[start:start + per_query]
            with conn.cursor() as cursor:
                if snapshot_id:
                    cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
                cursor.execute(" UNION ALL ".join(
                    f"SELECT {i}, count(*) FROM {quote_ident(schema)}.{quote_ident(table)}"
                    for i, (schema, table) in enumerate(chunk)))
                for i, count in cursor.fetchall():
                    schema, table = chunk[i]
                    counts[f"{schema}.{table}"] = count
            conn.rollback()
            if on_progress:
                on_progress(min(start + per_query, len(tables)), len(tables))
    return counts


def migration_states(database, schemas, snapshot_id=None, per_query=COUNT_TABLES_PER_QUERY):
    """{schema: [[app, name], …]} of every schema in `schemas` (each has a django_migrations table), read in
    slices, each in a transaction of its own (importing the snapshot when given) so locks never pile up."""
    states = {schema: [] for schema in schemas}
    with database.connect(autocommit=False) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        for start in range(0, len(schemas), per_query):
            chunk = schemas[start:start + per_query]
            with conn.cursor() as cursor:
                if snapshot_id:
                    cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
                cursor.execute(" UNION ALL ".join(
                    f"SELECT {i}, app::text, name::text FROM {quote_ident(schema)}.django_migrations"
                    for i, schema in enumerate(chunk)))
                for i, app, name in cursor.fetchall():
                    states[chunk[i]].append([app, name])
            conn.rollback()
    return {schema: sorted(rows) for schema, rows in states.items()}


def dump(database, path, schemas, *, snapshot_id=None, compress=False):
    """pg_dump -Fc of `schemas` into `path`. Uncompressed by default: the archive's zstd compresses it better and
    faster than pg_dump's zlib."""
    args = [tool("pg_dump", database), "-Fc", "--no-owner", "--no-privileges", "-f", str(path),
            "-Z", "6" if compress else "0"]
    if snapshot_id:
        args += [f"--snapshot={snapshot_id}"]
    for schema in schemas:
        args += ["-n", schema]
    run(args, env=database.env(), what=f"pg_dump of {', '.join(schemas[:3])}{'…' if len(schemas) > 3 else ''}")


class DumpInProgress:
    """pg_dump of `schemas` running in the background (`with` ends it if the caller fails first); `wait()` returns
    the dump's path once it is complete, or raises."""

    def __init__(self, database, path, schemas, *, snapshot_id=None):
        self.database, self.path, self.schemas, self.snapshot_id = database, Path(path), schemas, snapshot_id
        with database.connect(autocommit=True) as conn:
            # An estimate for progress: the uncompressed dump is about the size of the tables' heaps.
            self.estimated_bytes = conn.execute(
                "SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 't')",
                [list(schemas)]).fetchone()[0]

    def __enter__(self):
        args = [tool("pg_dump", self.database), "-Fc", "--no-owner", "--no-privileges", "-Z", "0",
                "-f", str(self.path)]
        if self.snapshot_id:
            args.append(f"--snapshot={self.snapshot_id}")
        for schema in self.schemas:
            args += ["-n", schema]
        self.process = subprocess.Popen(args, env=self.database.env(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        return self

    def wait(self):
        _, stderr = self.process.communicate()
        if self.process.returncode != 0:
            raise DomainError(BackupError.DUMP_FAILED, f"pg_dump of {', '.join(self.schemas)} failed: "
                              f"{stderr.decode(errors='replace').strip()[-2000:]}")
        return self.path

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        return False


def restore(database, path, *, jobs=2):
    """pg_restore of a custom-format dump into `database` as it is (a full restore: the schemas keep their names)."""
    run([tool("pg_restore", database), "--no-owner", "--no-privileges", "--exit-on-error", "-j", str(jobs),
         "-d", database.name, str(path)], env=database.env(), what="pg_restore")


_COPY_END = re.compile(rb"(?m)^\\\.\n")


def rewrite_schema(source, sink, old, new):
    """Copy pg_restore's SQL from `source` to `sink` with the schema `old` renamed `new` in every statement.
    Table data (COPY … FROM stdin blocks) is copied untouched, in large slices."""
    name = re.compile(rb"(?<![\w$])" + re.escape(old.encode()) + rb"(?![\w$])")
    replacement = new.encode()
    buffer, in_copy = b"", False
    while True:
        chunk = source.read(1 << 20)
        buffer += chunk
        while buffer:
            if in_copy:
                end = _COPY_END.search(buffer)
                if end is None:
                    if not chunk:
                        sink.write(buffer)
                        return
                    cut = buffer.rfind(b"\n") + 1  # keep a partial last line: it may be the terminator
                    sink.write(buffer[:cut])
                    buffer = buffer[cut:]
                    break
                sink.write(buffer[:end.end()])
                buffer, in_copy = buffer[end.end():], False
                continue
            newline = buffer.find(b"\n")
            if newline < 0:
                if not chunk:
                    sink.write(name.sub(replacement, buffer))
                    buffer = b""
                break
            line, buffer = buffer[:newline + 1], buffer[newline + 1:]
            sink.write(name.sub(replacement, line))
            if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
                in_copy = True
        if not chunk:
            if buffer:
                sink.write(buffer)
            return


def restore_as(database, path, old_schema, new_schema):
    """Restore the dump of `old_schema` into a new schema `new_schema` of `database`, in one transaction:
    pg_restore writes SQL, the schema is renamed on the way, psql applies it (stops at the first error)."""
    env = database.env()
    restore_cmd = [tool("pg_restore", database), "--no-owner", "--no-privileges", "-f", "-", str(path)]
    psql_cmd = [tool("psql", database), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                "-d", database.name, "-o", os.devnull]
    producer = subprocess.Popen(restore_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    consumer = subprocess.Popen(psql_cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    errors = {}

    def collect(name, stream):
        errors[name] = stream.read()

    readers = [threading.Thread(target=collect, args=(n, s), daemon=True)
               for n, s in (("pg_restore", producer.stderr), ("psql", consumer.stderr))]
    for reader in readers:
        reader.start()
    broken = False
    try:
        rewrite_schema(producer.stdout, consumer.stdin, old_schema, new_schema)
    except BrokenPipeError:
        broken = True  # psql stopped at an error: its message says which
    finally:
        try:
            consumer.stdin.close()
        except BrokenPipeError:
            broken = True
        producer.stdout.close()
    producer_rc, consumer_rc = producer.wait(), consumer.wait()
    for reader in readers:
        reader.join()
    if producer_rc != 0 or consumer_rc != 0 or broken:
        message = (errors.get("psql") or errors.get("pg_restore") or b"").decode(errors="replace").strip()
        raise DomainError(BackupError.DUMP_FAILED, f"Restoring the schema failed: {message[-2000:]}")


def create_database(database, name):
    with database.connect(autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    return database.named(name)


def drop_database(database, name):
    with database.connect(autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
