# `migrate` is migrate_schemas, as in django-tenants; both resolve to ours because `tenants` comes first.
from tenants.management.commands.migrate_schemas import Command  # noqa: F401
