"""Our migrate_schemas: one query finds the tenant schemas that are behind, and only those are migrated."""
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_exists

from accounts.actions import register_business
from conftest import make_user
from tenants.actions import reject_tenant
from tenants.migration_state import is_up_to_date, schemas_behind
from tenants.models import Tenant
from tenants.pool import create_and_migrate_schema, drop_schema

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMAS = ["t_test_mig_a", "t_test_mig_b", "t_test_mig_c"]
BEHIND = "t_test_mig_b"


@pytest.fixture(scope="module")
def migrated_schemas(django_db_setup, django_db_blocker):
    """Three tenant schemas migrated the normal way, once for the module (rows are made per test)."""
    with django_db_blocker.unblock():
        for schema in SCHEMAS:
            if not schema_exists(schema):
                create_and_migrate_schema(schema)
        connection.set_schema_to_public()
    yield SCHEMAS
    with django_db_blocker.unblock():
        for schema in SCHEMAS:
            drop_schema(schema)


@pytest.fixture
def tenants(migrated_schemas, plans):
    rows = [
        Tenant.objects.create(name=schema, slug=schema.replace("_", "-"), schema_name=schema,
                              status=Tenant.Status.ACTIVE, plan=plans["basic"])
        for schema in migrated_schemas
    ]
    yield rows
    # Whatever a test did to a schema, leave it fully migrated for the next one.
    connection.set_schema_to_public()
    for schema in migrated_schemas:
        call_command("migrate_schemas", schema_name=schema, interactive=False, verbosity=0)
    connection.set_schema_to_public()


def unrecord(schema, app="sessions", name="0001_initial"):
    """Make a schema behind: forget one applied migration (sessions is shared-only, so re-applying it in a
    tenant schema only records it again)."""
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{schema}".django_migrations WHERE app = %s AND name = %s', [app, name])
        assert cursor.rowcount == 1


def recorded(schema, app="sessions", name="0001_initial"):
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{schema}".django_migrations WHERE app = %s AND name = %s',
                       [app, name])
        return cursor.fetchone()[0] == 1


def migrate_tenants(*args, **options):
    out = StringIO()
    connection.set_schema_to_public()
    call_command("migrate_schemas", *args, tenant=True, interactive=False, stdout=out, **options)
    connection.set_schema_to_public()
    return out.getvalue()


def migrated_schema_names(captured_stdout):
    """Schemas django-tenants' executor ran Django's migrate in (it prefixes each line with the schema)."""
    return {schema for schema in SCHEMAS + ["t_test_mig_empty"] if f":{schema}]" in captured_stdout}


def test_up_to_date_schemas_are_checked_with_one_query_and_none_is_migrated(tenants, capsys):
    with CaptureQueriesContext(connection) as queries:
        output = migrate_tenants()

    assert "tenant schemas: 3 checked, 0 behind, migrated 0 in" in output
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SET search_path")]
    assert len(statements) == 3, statements  # tenant rows, the catalogue, one UNION ALL
    assert all(s.count("django_migrations") == 3 for s in statements if "UNION ALL" in s)
    assert migrated_schema_names(capsys.readouterr().out) == set()


def test_only_the_schema_behind_is_migrated(tenants, capsys):
    unrecord(BEHIND)

    output = migrate_tenants()

    assert "tenant schemas: 3 checked, 1 behind, migrated 1 in" in output
    assert migrated_schema_names(capsys.readouterr().out) == {BEHIND}
    assert recorded(BEHIND)
    assert schemas_behind(connection, SCHEMAS).behind == []


def test_migrate_alias_is_the_same_command(tenants):
    unrecord(BEHIND)
    out = StringIO()

    call_command("migrate", tenant=True, interactive=False, stdout=out)

    assert "tenant schemas: 3 checked, 1 behind, migrated 1 in" in out.getvalue()
    assert recorded(BEHIND)


def test_check_exits_non_zero_when_a_schema_is_behind_and_migrates_nothing(tenants):
    assert "3 checked, 0 behind" in migrate_tenants(check_unapplied=True)  # up to date: returns normally

    unrecord(BEHIND)
    with pytest.raises(SystemExit) as exit_info:
        migrate_tenants(check_unapplied=True)

    assert exit_info.value.code == 1
    assert not recorded(BEHIND)


def test_plan_shows_only_the_schema_behind_and_applies_nothing(tenants, capsys):
    unrecord(BEHIND)

    output = migrate_tenants(plan=True)

    captured = capsys.readouterr().out
    assert "3 checked, 1 behind, planned 1" in output
    assert migrated_schema_names(captured) == {BEHIND}
    # django-tenants hands our stdout to Django's migrate, so the plan lands in the command's output.
    assert "Planned operations" in output and "sessions.0001_initial" in output
    assert not recorded(BEHIND)


def test_explicit_schema_is_handed_to_django_tenants(tenants, capsys):
    unrecord(BEHIND)

    out = StringIO()
    call_command("migrate_schemas", schema_name=BEHIND, interactive=False, stdout=out)

    assert "tenant schemas:" not in out.getvalue()  # django-tenants' own path, no fast-path summary
    assert migrated_schema_names(capsys.readouterr().out) == {BEHIND}
    assert recorded(BEHIND)


def test_tenant_rows_without_a_schema_are_skipped(tenants, plans, named):
    """Pending and rejected sign-ups carry placeholder schema names that are never created."""
    pending = register_business(user=make_user("dave@initech.test"), business_name="Initech", plan=plans["free"])
    rejected = register_business(user=make_user("erin@hooli.test"), business_name="Hooli", plan=plans["free"])
    reject_tenant(rejected, acting_user=named.admin, reason="Not a business")
    assert not schema_exists(pending.schema_name)

    output = migrate_tenants()

    # Acme and Globex (from `named`) are real, migrated schemas too.
    assert "tenant schemas: 5 checked, 0 behind, migrated 0 in" in output
    assert "(2 tenant rows without a schema skipped)" in output


def test_a_schema_without_django_migrations_counts_as_behind(tenants, plans, capsys):
    """E.g. a schema whose creation stopped right after CREATE SCHEMA."""
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "t_test_mig_empty"')
    try:
        Tenant.objects.create(name="Empty", slug="empty", schema_name="t_test_mig_empty",
                              status=Tenant.Status.ACTIVE, plan=plans["basic"])

        output = migrate_tenants()

        assert "tenant schemas: 4 checked, 1 behind, migrated 1 in" in output
        assert migrated_schema_names(capsys.readouterr().out) == {"t_test_mig_empty"}
        assert schemas_behind(connection, ["t_test_mig_empty"]).behind == []
    finally:
        drop_schema("t_test_mig_empty")


# --- what "up to date" means, squashed migrations included --------------------------------------------------

def fake_loader(nodes, replacing=None):
    replacing = replacing or {}
    disk = {key: SimpleNamespace(replaces=replacing.get(key, [])) for key in nodes}
    return SimpleNamespace(graph=SimpleNamespace(nodes={key: disk[key] for key in nodes}), disk_migrations=disk)


def test_up_to_date_needs_every_migration_of_the_graph():
    loader = fake_loader([("a", "0001"), ("a", "0002")])
    assert is_up_to_date({("a", "0001"), ("a", "0002")}, loader)
    assert not is_up_to_date({("a", "0001")}, loader)
    # Rows for migrations the code no longer has are ignored, as Django ignores them.
    assert is_up_to_date({("a", "0001"), ("a", "0002"), ("gone", "0001")}, loader)


def test_a_squashed_migration_counts_when_it_or_everything_it_replaces_is_recorded():
    squashed = ("a", "0001_squashed_0003")
    loader = fake_loader([squashed, ("a", "0004")], {squashed: [("a", "0001"), ("a", "0002"), ("a", "0003")]})
    # A schema migrated before the squash existed recorded the originals only.
    assert is_up_to_date({("a", "0001"), ("a", "0002"), ("a", "0003"), ("a", "0004")}, loader)
    # A schema made after it recorded the squashed migration (and Django also records the replaced ones).
    assert is_up_to_date({squashed, ("a", "0004")}, loader)
    # Half of a squash applied: Django would apply the rest, so the schema is behind.
    assert not is_up_to_date({("a", "0001"), ("a", "0004")}, loader)


def test_a_schema_being_provisioned_is_left_to_its_provision_task(tenants, capsys):
    unrecord(BEHIND)
    Tenant.objects.filter(schema_name=BEHIND).update(status=Tenant.Status.PROVISIONING)
    output = migrate_tenants()
    assert migrated_schema_names(capsys.readouterr().out) == set()
    assert "2 checked, 0 behind" in output
    assert not recorded(BEHIND)
