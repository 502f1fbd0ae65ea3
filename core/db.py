"""Database connection pool helpers (DATABASES["default"]["OPTIONS"]["pool"] in config.settings)."""
import time
import weakref

from psycopg.pq import TransactionStatus

# A connection whose reset ran this recently is known to be alive: it is lent again without a health check.
RECENTLY_RESET_SECONDS = 2.0

_reset_at = weakref.WeakKeyDictionary()  # psycopg connection -> monotonic time its last reset succeeded


def reset_pooled_connection(conn):
    """psycopg_pool's `reset`: run on every connection given back to the pool, before anyone borrows it again.

    A pooled connection keeps its session's state. Session-level advisory locks (the tenant pool's refill lock,
    tenants.pool.fill_pool) would outlive the code that took them whenever that code's connection is closed
    midway (migrate_schemas does): without a pool the close ended the session and released them, with a pool the
    lock would stay held by an idle connection for good. The search_path is django-tenants' business: it sets it
    again on every borrowed connection."""
    conn.execute("SELECT pg_advisory_unlock_all()")
    if conn.pgconn.transaction_status != TransactionStatus.IDLE:
        conn.rollback()
    _reset_at[conn] = time.monotonic()


def check_pooled_connection(conn):
    """psycopg_pool's `check`, run when a connection is lent: a round trip to Postgres, unless the connection
    answered its reset moments ago (a busy server lends each connection many times a second; a connection idle
    longer, which a database restart may have broken, is checked and replaced if dead)."""
    from psycopg_pool import ConnectionPool

    reset_at = _reset_at.get(conn)
    if reset_at is not None and time.monotonic() - reset_at < RECENTLY_RESET_SECONDS:
        return
    ConnectionPool.check_connection(conn)
