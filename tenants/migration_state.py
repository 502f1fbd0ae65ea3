"""Which tenant schemas are behind the code's migrations, found with one query over every schema's
django_migrations table instead of running Django's migrate command once per schema.

A deploy with nothing to apply used to cost one full `migrate` (graph load, state rendering, checks) per
tenant; this costs one catalogue query plus one UNION ALL over the schemas' django_migrations tables.
"""
from dataclasses import dataclass, field

from django.db.migrations.loader import MigrationLoader

# One UNION ALL branch per schema. Each branch takes a lock on one table until the query ends; past a few
# thousand schemas that would exhaust the shared lock table (max_locks_per_transaction x max_connections),
# so very large installations are read in batches of this many schemas. Up to this size it is one query.
SCHEMAS_PER_QUERY = 2000


@dataclass
class SchemaReport:
    checked: list = field(default_factory=list)  # schemas that exist, in the order given
    behind: list = field(default_factory=list)  # subset of checked with migrations to apply
    missing: list = field(default_factory=list)  # tenant rows whose schema does not exist (pending, rejected)


def code_migration_loader():
    """The migrations a fully migrated schema has: graph nodes as Django plans them on an empty database.

    Built without a connection, so squashed migrations stand in for the ones they replace (what a fresh
    schema records); `is_up_to_date` accepts either form.
    """
    return MigrationLoader(None, ignore_no_migrations=True)


def is_up_to_date(applied, loader):
    """True when every migration in the code's graph is recorded in `applied` (a set of (app, name)).

    A squashed migration counts as applied when it is recorded itself or when everything it replaces is,
    exactly as Django's loader decides. Rows for migrations the code no longer has are ignored, as Django
    ignores them.
    """
    disk = loader.disk_migrations

    def applied_key(key):
        if key in applied:
            return True
        migration = disk.get(key)
        return bool(migration and migration.replaces) and all(applied_key(r) for r in migration.replaces)

    return all(applied_key(key) for key in loader.graph.nodes)


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


def existing_schemas(cursor, schema_names):
    """(schemas that exist, those of them that have a django_migrations table), both as sets."""
    cursor.execute(
        """
        SELECT n.nspname, EXISTS (
            SELECT 1 FROM pg_catalog.pg_class c
            WHERE c.relnamespace = n.oid AND c.relname = 'django_migrations' AND c.relkind IN ('r', 'p')
        )
        FROM pg_catalog.pg_namespace n
        WHERE n.nspname = ANY(%s)
        """,
        [list(schema_names)],
    )
    exists, with_table = set(), set()
    for name, has_table in cursor.fetchall():
        exists.add(name)
        if has_table:
            with_table.add(name)
    return exists, with_table


def applied_by_schema(cursor, schemas):
    """{schema: {(app, name), ...}} for the given schemas (each must have a django_migrations table)."""
    applied = {schema: set() for schema in schemas}
    schemas = list(schemas)
    for start in range(0, len(schemas), SCHEMAS_PER_QUERY):
        batch = schemas[start:start + SCHEMAS_PER_QUERY]
        # Schema names go in as parameters for the label column and quoted identifiers for the table.
        sql = "\nUNION ALL\n".join(
            f"SELECT %s::text, app, name FROM {_quote(schema)}.django_migrations" for schema in batch
        )
        cursor.execute(sql, batch)
        for schema, app, name in cursor.fetchall():
            applied[schema].add((app, name))
    return applied


def schemas_behind(connection, schema_names, loader=None):
    """Sort `schema_names` (tenant rows' schemas) into checked, behind and missing. Order is kept."""
    loader = loader or code_migration_loader()
    schema_names = list(dict.fromkeys(schema_names))
    report = SchemaReport()
    if not schema_names:
        return report
    with connection.cursor() as cursor:
        exists, with_table = existing_schemas(cursor, schema_names)
        applied = applied_by_schema(cursor, [s for s in schema_names if s in with_table])
    for schema in schema_names:
        if schema not in exists:
            report.missing.append(schema)
            continue
        report.checked.append(schema)
        if schema not in with_table or not is_up_to_date(applied[schema], loader):
            report.behind.append(schema)
    return report
