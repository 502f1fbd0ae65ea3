"""Helpers shared by the benchmarks: a throwaway database, Django setup against it, figures and output.

A benchmark never touches the dev database: it creates `switchboard_bench_<pid>` on the server named by
DATABASE_URL (or the settings' default), points DATABASE_URL at it before django.setup(), migrates the
shared apps there, and drops it at the end whatever happens.
"""
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/switchboard"


def _server_url(database_url, dbname):
    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def _admin_connect(database_url):
    import psycopg

    parts = urlsplit(database_url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1", port=parts.port or 5432, user=parts.username or "postgres",
        password=parts.password or None, dbname="postgres", autocommit=True,
    )


def _configured_database_url():
    """DATABASE_URL as settings would see it (process env, then var/runtime.env, then .env)."""
    import environ

    env = environ.Env()
    environ.Env.read_env(BASE_DIR / "var" / "runtime.env")
    environ.Env.read_env(BASE_DIR / ".env")
    return env("DATABASE_URL", default=DEFAULT_DATABASE_URL)


@contextlib.contextmanager
def bench_database(log=print):
    """Create switchboard_bench_<pid>, configure Django against it, migrate the shared apps; drop it after."""
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    base_url = _configured_database_url()
    name = f"switchboard_bench_{os.getpid()}"
    with _admin_connect(base_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = _server_url(base_url, name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        started = time.perf_counter()
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
        log(f"database {name}: created, shared apps migrated in {time.perf_counter() - started:.1f} s")
        yield name
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        with _admin_connect(base_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"database {name}: dropped")


def quiet_logging():
    import logging

    logging.getLogger().setLevel(logging.WARNING)


def median_ms(seconds):
    return round(statistics.median(seconds) * 1000, 2)


def spread(seconds):
    ms = sorted(s * 1000 for s in seconds)
    return f"min {ms[0]:.1f} / median {statistics.median(ms):.1f} / max {ms[-1]:.1f} ms"


def emit(figures):
    """The benchmark's last line: one JSON object."""
    sys.stdout.flush()
    print(json.dumps(figures), flush=True)
