"""The warm pool: pooled schemas are real, migrated schemas; approval takes one in one transaction; an empty
pool falls back to background provisioning, whose failures stay visible and can be retried.

These tests create real schemas (transactional, cleaned up by drop_pool_schemas).
"""
import asyncio
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, connection
from django_tenants.utils import schema_exists

from accounts.actions import register_business
from conftest import make_user
from tenants import pool
from tenants.actions import approve_tenant, retry_provisioning
from tenants.migration_state import schemas_behind
from tenants.models import Domain, Tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("drop_pool_schemas")]


@pytest.fixture(autouse=True)
def no_refill(settings):
    """Approval refills the pool on commit (eagerly in tests); each test sets the size it wants."""
    settings.TENANT_POOL_SIZE = 0


@pytest.fixture
def applicant(named):
    """Dave signs up Initech; the platform admin decides."""
    dave = make_user("dave@initech.test", full_name="Dave Applicant")
    return register_business(user=dave, business_name="Initech", plan=named.acme.plan)


def is_fully_migrated(schema_name):
    connection.set_schema_to_public()
    report = schemas_behind(connection, [schema_name])
    return report.checked == [schema_name] and not report.behind


def test_fill_pool_creates_pooled_rows_with_fully_migrated_schemas():
    assert pool.fill_pool(2) == 2
    pooled = list(Tenant.objects.filter(status=Tenant.Status.POOLED).values_list("schema_name", flat=True))
    assert len(pooled) == 2
    for schema in pooled:
        assert schema_exists(schema)
        assert is_fully_migrated(schema)
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [f"{schema}.django_content_type"])
            assert cursor.fetchone()[0] is not None
    assert pool.fill_pool(2) == 0  # already full


def test_approval_takes_a_pooled_schema_in_one_transaction(named, applicant, settings, mailoutbox):
    pool.fill_pool(1)
    pooled_schema = Tenant.objects.get(status=Tenant.Status.POOLED).schema_name
    settings.TENANT_POOL_SIZE = 1  # the on-commit refill tops the pool back up

    tenant = approve_tenant(applicant, acting_user=named.admin)

    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert tenant.schema_name == pooled_schema
    assert tenant.provisioning_progress == 100
    assert tenant.trial_ends_at is not None and tenant.approved_at is not None
    assert Domain.objects.filter(tenant=tenant, domain="initech.localhost", is_primary=True).exists()
    assert is_fully_migrated(pooled_schema)
    refilled = Tenant.objects.get(status=Tenant.Status.POOLED)
    assert refilled.schema_name != pooled_schema  # the claimed pooled row is gone; a new one replaced it
    assert is_fully_migrated(refilled.schema_name)
    # The owner hears of the approval (the platform admin heard of the sign-up when it committed).
    assert [m.to for m in mailoutbox if "New sign-up" not in m.subject] == [["dave@initech.test"]]


def test_approval_rolls_back_as_one_unit(named, applicant):
    """A failure after the pooled schema was claimed leaves both the pool and the sign-up untouched."""
    pool.fill_pool(1)
    pooled = Tenant.objects.get(status=Tenant.Status.POOLED)
    # Someone else already holds the domain approval wants to create: the insert fails inside the transaction.
    Domain.objects.create(tenant=named.globex, domain="initech.localhost", is_primary=False)

    with pytest.raises(IntegrityError):
        approve_tenant(applicant, acting_user=named.admin)

    applicant.refresh_from_db()
    assert applicant.status == Tenant.Status.PENDING
    assert not applicant.schema_name.startswith("t_")
    assert Tenant.objects.filter(pk=pooled.pk, status=Tenant.Status.POOLED).exists()


def _collect_status_messages(group):
    """Subscribe to a live status group now; the returned drain() collects what was sent to it since."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)

    async def drain_async():
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), timeout=1.0))
            except asyncio.TimeoutError:
                return messages

    def drain():
        try:
            return async_to_sync(drain_async)()
        finally:
            async_to_sync(layer.group_discard)(group, channel)

    return drain


@pytest.fixture
def private_channel_layer(settings):
    """Live updates go through the real Redis channel layer, under a prefix no other process listens to."""
    layers = {key: dict(value) for key, value in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": f"sbtest:{uuid.uuid4().hex}"}
    settings.CHANNEL_LAYERS = layers


def test_empty_pool_provisions_in_background_with_progress(named, applicant, private_channel_layer):
    from tenants.notify import status_group

    drain = _collect_status_messages(status_group(applicant.pk))

    returned = approve_tenant(applicant, acting_user=named.admin)

    assert returned.status == Tenant.Status.PROVISIONING  # what approval itself decided
    tenant = Tenant.objects.get(pk=applicant.pk)  # the (eager) provisioning task ran on commit
    assert tenant.status == Tenant.Status.ACTIVE
    assert tenant.provisioning_progress == 100 and tenant.provisioning_error == ""
    assert is_fully_migrated(tenant.schema_name)
    assert Domain.objects.filter(tenant=tenant, is_primary=True).exists()

    updates = [m["data"] for m in drain()]
    progress = [u for u in updates if "applied" in u]
    assert progress, updates
    assert [u["applied"] for u in progress] == sorted(u["applied"] for u in progress)
    assert progress[-1]["applied"] == progress[-1]["total"]
    assert all(u["progress"] <= 99 for u in progress)  # 100 only once the tenant is active
    assert updates[-1]["status"] == "active" and updates[-1]["progress"] == 100


def test_provisioning_reports_progress_for_each_migration(named, applicant, private_channel_layer):
    from tenants.notify import status_group

    drain = _collect_status_messages(status_group(applicant.pk))
    approve_tenant(applicant, acting_user=named.admin)

    progress = [m["data"] for m in drain() if "applied" in m["data"]]
    assert len({u["applied"] for u in progress}) > 1, progress


class InjectedMigrationFault(Exception):
    pass


class MigrationFault:
    """Fails the migrate step part-way, at contenttypes.0002's first statement, through Django's
    execute_wrapper hook: by then contenttypes.0001 has created and committed its table in the new schema."""

    def __init__(self):
        self.armed = True
        self.schemas = []

    def __call__(self, execute, sql, params, many, context):
        if self.armed and '"django_content_type"' in sql and "DROP NOT NULL" in sql:
            self.schemas.append(context["connection"].schema_name)
            raise InjectedMigrationFault(f"injected fault in {context['connection'].schema_name}")
        return execute(sql, params, many, context)


@pytest.fixture
def migration_fault():
    fault = MigrationFault()
    with connection.execute_wrapper(fault):
        yield fault


def test_provisioning_failure_is_visible_drops_the_half_made_schema_and_retry_recovers(
    named, applicant, migration_fault
):
    with pytest.raises(InjectedMigrationFault):
        approve_tenant(applicant, acting_user=named.admin)  # the eager task's failure surfaces on commit

    failed_schema = migration_fault.schemas[0]
    tenant = Tenant.objects.get(pk=applicant.pk)
    assert tenant.status == Tenant.Status.PROVISIONING
    assert tenant.schema_name == failed_schema
    assert "InjectedMigrationFault" in tenant.provisioning_error
    assert tenant.provisioning_progress == 0
    assert not schema_exists(failed_schema)  # it held django_migrations and contenttypes.0001 when it failed

    migration_fault.armed = False
    retry_provisioning(tenant, acting_user=named.admin)

    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert tenant.provisioning_error == ""
    assert tenant.provisioning_progress == 100
    assert tenant.schema_name != failed_schema
    assert is_fully_migrated(tenant.schema_name)


def test_retry_uses_a_pooled_schema_when_one_is_ready(named, applicant, migration_fault):
    with pytest.raises(InjectedMigrationFault):
        approve_tenant(applicant, acting_user=named.admin)
    migration_fault.armed = False
    pool.fill_pool(1)
    pooled_schema = Tenant.objects.get(status=Tenant.Status.POOLED).schema_name

    tenant = retry_provisioning(Tenant.objects.get(pk=applicant.pk), acting_user=named.admin)

    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert tenant.schema_name == pooled_schema
    assert not Tenant.objects.filter(status=Tenant.Status.POOLED).exists()


# --- a pooled schema is the same schema a fresh migrate makes ----------------------------------------------

def _pg_dump_binary():
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        major = int(cursor.fetchone()[0]) // 10000
    for candidate in (Path(f"/usr/lib/postgresql/{major}/bin/pg_dump"), shutil.which("pg_dump")):
        if candidate and Path(candidate).is_file():
            version = subprocess.run([str(candidate), "--version"], capture_output=True, text=True).stdout
            found = re.search(r"(\d+)\.", version)
            if found and int(found.group(1)) == major:
                return str(candidate)
    pytest.fail(f"no pg_dump for PostgreSQL {major} found")


def _schema_only_dump(schema_name):
    db = connection.settings_dict
    command = [_pg_dump_binary(), "--schema-only", "--no-owner", "--no-privileges", f"--schema={schema_name}",
               "--host", db["HOST"] or "127.0.0.1", "--port", str(db["PORT"] or 5432),
               "--username", db["USER"] or "postgres", db["NAME"]]
    env = {"PGPASSWORD": db["PASSWORD"]} if db.get("PASSWORD") else {}
    result = subprocess.run(command, capture_output=True, text=True, env={**_base_env(), **env}, check=True)
    lines = []
    for line in result.stdout.splitlines():
        # Per-dump noise: version banners and pg_dump's random \restrict key.
        if line.startswith(("--", "\\restrict", "\\unrestrict")) or not line.strip():
            continue
        lines.append(re.sub(rf"\b{re.escape(schema_name)}\b", "<schema>", line))
    return "\n".join(lines)


def _base_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _rows(schema_name, sql):
    with connection.cursor() as cursor:
        cursor.execute(sql.format(schema=f'"{schema_name}"'))
        return sorted(cursor.fetchall())


def test_pooled_schema_is_identical_to_a_freshly_migrated_one():
    pool.fill_pool(1)
    pooled_schema = Tenant.objects.get(status=Tenant.Status.POOLED).schema_name
    # The reference is made by django-tenants itself, the way a stock tenant save makes its schema.
    fresh_schema = f"t_fresh_{uuid.uuid4().hex[:8]}"
    Tenant(schema_name=fresh_schema).create_schema(check_if_exists=True, verbosity=0)
    connection.set_schema_to_public()

    pooled_dump, fresh_dump = _schema_only_dump(pooled_schema), _schema_only_dump(fresh_schema)

    assert "CREATE TABLE <schema>.django_content_type" in fresh_dump
    assert pooled_dump == fresh_dump
    for sql in ("SELECT app, name FROM {schema}.django_migrations",
                "SELECT app_label, model FROM {schema}.django_content_type"):
        assert _rows(pooled_schema, sql) == _rows(fresh_schema, sql)


def test_a_redelivered_provision_task_starts_over_on_its_half_made_schema(named, applicant, monkeypatch):
    """The worker died mid-migration (acks_late redelivers the task): the schema left behind is rebuilt."""
    monkeypatch.setattr("tenants.tasks.provision_tenant.delay", lambda tenant_id: None)
    tenant = approve_tenant(applicant, acting_user=named.admin)
    assert tenant.status == Tenant.Status.PROVISIONING
    with connection.cursor() as cursor:  # what a killed worker leaves: the schema with part of the tables
        cursor.execute(f'CREATE SCHEMA "{tenant.schema_name}"')
        cursor.execute(f'CREATE TABLE "{tenant.schema_name}".django_migrations (id serial primary key)')

    from tenants.tasks import provision_tenant

    provision_tenant(tenant.pk)

    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and tenant.provisioning_error == ""
    assert is_fully_migrated(tenant.schema_name)
