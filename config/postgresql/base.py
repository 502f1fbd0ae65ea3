"""django-tenants' Postgres backend, with the connection pool's health check of core.db.

Django builds the psycopg pool itself and, with CONN_HEALTH_CHECKS, gives it psycopg_pool's stock check: a round
trip to Postgres every time a connection is lent, i.e. on every request. check_pooled_connection skips it for a
connection whose reset (run when it came back, a round trip of its own) succeeded moments ago. Django offers no
option for the check, so the pool Django made gets ours before first use.
"""
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper

from core.db import check_pooled_connection


class DatabaseWrapper(TenantDatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        if pool is not None and getattr(pool, "_check", None) is not None:
            pool._check = check_pooled_connection
        return pool
