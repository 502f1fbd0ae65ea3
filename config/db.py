"""Database connection pool helpers (DATABASES["default"]["OPTIONS"]["pool"] in config.settings)."""
from psycopg.pq import TransactionStatus


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
