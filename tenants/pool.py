"""The warm pool: tenant schemas created and migrated the normal way before anyone needs them.

Pooled schemas are tenant rows with status `pooled`, so every `migrate_schemas` keeps them current and a
pooled schema is identical to a freshly migrated one. Approval takes one in a single transaction
(tenants.actions.approve_tenant); `refill_tenant_pool` tops the pool up. Cloning a template schema was
measured to drift (constraint names, sequence types, stale template) and is deliberately not used.
"""
import contextlib
import io
import logging
import re

from celery import shared_task
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django_tenants.signals import schema_migrate_message
from django_tenants.utils import schema_exists

from .models import Tenant

log = logging.getLogger(__name__)
POOL_LOCK_ID = 0x5B_0001  # pg advisory lock key: one refill at a time across all workers
_APPLYING = re.compile(r"Applying (\S+)\.\.\.")


@shared_task(name="tenants.tasks.refill_tenant_pool", acks_late=True)
def refill_tenant_pool():
    return fill_pool()


def pooled_count():
    return Tenant.objects.filter(status=Tenant.Status.POOLED).count()


def create_and_migrate_schema(schema_name, on_progress=None):
    """CREATE SCHEMA and run every tenant migration with django-tenants' standard executor.

    on_progress(applied, total) is called as each migration is applied. If anything fails after the schema
    was created, it is dropped, so a failed attempt never leaves a half-made schema behind.
    """
    from django.db.migrations.loader import MigrationLoader

    total = len(MigrationLoader(connection, ignore_no_migrations=True).graph.nodes)
    applied = 0

    def progress(sender, message, **kwargs):
        nonlocal applied
        if f":{schema_name}]" in message and _APPLYING.search(message):
            applied += 1
            if on_progress:
                on_progress(min(applied, total), total)

    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema_name}"')  # fails on an existing schema: never ours to drop
    schema_migrate_message.connect(progress, weak=False)
    try:
        # django-tenants writes its per-line migrate messages to sys.stdout and only sends
        # schema_migrate_message (our progress source) at verbosity >= 1: keep them, but off the console.
        with contextlib.redirect_stdout(io.StringIO()):
            call_command("migrate_schemas", tenant=True, schema_name=schema_name, interactive=False,
                         verbosity=1 if on_progress else 0)
    except Exception:
        drop_schema(schema_name)
        raise
    finally:
        schema_migrate_message.disconnect(progress)
        connection.set_schema_to_public()
    if on_progress:
        on_progress(total, total)


def drop_schema(schema_name):
    connection.set_schema_to_public()
    if schema_name and schema_exists(schema_name):
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{schema_name}" CASCADE')


def create_pooled_tenant():
    schema_name = Tenant.new_schema_name()
    create_and_migrate_schema(schema_name)
    # The row appears only once the schema is complete, so approval can never take a half-made one.
    return Tenant.objects.create(
        schema_name=schema_name, name="(pooled)", slug=schema_name.replace("_", "-"), status=Tenant.Status.POOLED
    )


def fill_pool(size=None):
    """Top the pool up to `size` (TENANT_POOL_SIZE). Returns how many schemas were created."""
    size = settings.TENANT_POOL_SIZE if size is None else size
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [POOL_LOCK_ID])
        if not cursor.fetchone()[0]:
            log.info("pool refill already running elsewhere")
            return 0
    created = 0
    try:
        while pooled_count() < size:
            create_pooled_tenant()
            created += 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [POOL_LOCK_ID])
    if created:
        log.info("tenant pool: created %d schema(s), %d ready", created, pooled_count())
    return created


def take_pooled_schema():
    """Inside the caller's transaction: claim one pooled schema and remove its row. None if the pool is empty.

    One statement; SKIP LOCKED lets concurrent approvals each take a different schema without waiting.
    """
    assert transaction.get_connection().in_atomic_block, "take_pooled_schema must run inside a transaction"
    table = Tenant._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id = (SELECT id FROM {table} WHERE status = %s ORDER BY id "
            "FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING schema_name",
            [Tenant.Status.POOLED],
        )
        row = cursor.fetchone()
    return row[0] if row else None
