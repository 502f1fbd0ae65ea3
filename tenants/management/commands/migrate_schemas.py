"""django-tenants' migrate_schemas, but a deploy only migrates the tenant schemas that are behind.

Which schemas are behind is decided with one query over every tenant schema's django_migrations table
(tenants.migration_state); django-tenants' executor (standard, multiprocessing or subprocess, with
--parallel) then runs only on those. Everything the fast path does not cover -- an explicit --schema, an
app_label/migration_name target, --fake, --fake-initial, --prune, --run-syncdb, multi-type tenants --
is handed to django-tenants unchanged.
"""
import sys
import time

from django.core.management.base import CommandError
from django.db import connections
from django_tenants.management.commands import SyncCommon
from django_tenants.management.commands.migrate_schemas import GET_EXECUTOR_FUNCTION, MigrateSchemasCommand
from django_tenants.utils import (
    get_public_schema_name,
    get_tenant_database_alias,
    get_tenant_migration_order,
    get_tenant_model,
    has_multi_type_tenants,
)

from tenants.migration_state import code_migration_loader, schemas_behind

# Options that change what migrate does to a schema that is already up to date: leave those to the parent.
_PARENT_ONLY_OPTIONS = ("app_label", "migration_name", "schema_name", "fake", "fake_initial", "prune", "run_syncdb")


class Command(MigrateSchemasCommand):
    help = (
        "Migrate the public schema and every tenant schema that is behind. Up-to-date tenant schemas are "
        "found with one query and skipped; --check exits non-zero when any schema is behind."
    )

    def handle(self, *args, **options):
        if has_multi_type_tenants() or any(options.get(name) for name in _PARENT_ONLY_OPTIONS):
            return super().handle(*args, **options)
        SyncCommon.handle(self, *args, **options)
        self.PUBLIC_SCHEMA_NAME = get_public_schema_name()
        executor = GET_EXECUTOR_FUNCTION(codename=self.executor)(self.args, self.options)
        if self.sync_public:
            executor.run_migrations(tenants=[self.PUBLIC_SCHEMA_NAME])
        if self.sync_tenant:
            self.migrate_tenants_behind(executor)

    def migrate_tenants_behind(self, executor):
        started = time.monotonic()
        database = self.options.get("database") or get_tenant_database_alias()
        connection = connections[database]
        connection.set_schema_to_public()

        # A provisioning tenant's schema is being built by the provision task with this same code; migrating it
        # here too would race that task. If the task died, its retry rebuilds the schema from scratch.
        tenants = (
            get_tenant_model().objects.using(database)
            .exclude(schema_name=self.PUBLIC_SCHEMA_NAME)
            .exclude(status="provisioning")
            .values_list("schema_name", flat=True)
        )
        migration_order = get_tenant_migration_order()
        if migration_order is not None:
            tenants = tenants.order_by(*migration_order)

        loader = code_migration_loader()
        conflicts = loader.detect_conflicts()
        if conflicts:
            names = "; ".join("%s in %s" % (", ".join(sorted(n)), app) for app, n in conflicts.items())
            raise CommandError(
                "Conflicting migrations detected; multiple leaf nodes in the migration graph: (%s).\n"
                "To fix them run 'python manage.py makemigrations --merge'" % names
            )
        report = schemas_behind(connection, list(tenants), loader)
        verbosity = int(self.options.get("verbosity", 1))
        skipped = f" ({len(report.missing)} tenant rows without a schema skipped)" if report.missing else ""
        if verbosity >= 2 and report.missing:
            self.stdout.write("tenant rows without a schema: " + ", ".join(report.missing))

        if self.options.get("check_unapplied"):
            if verbosity >= 1 or report.behind:
                self.stdout.write(
                    f"tenant schemas: {len(report.checked)} checked, {len(report.behind)} behind"
                    + (": " + ", ".join(report.behind[:20]) + (" ..." if len(report.behind) > 20 else "")
                       if report.behind else "")
                    + skipped
                )
            if report.behind:
                sys.exit(1)
            return

        executor.run_migrations(tenants=list(report.behind))
        connection.set_schema_to_public()
        if verbosity >= 1:
            verb = "planned" if self.options.get("plan") else "migrated"
            self.stdout.write(
                f"tenant schemas: {len(report.checked)} checked, {len(report.behind)} behind, "
                f"{verb} {len(report.behind)} in {time.monotonic() - started:.2f} s{skipped}"
            )

