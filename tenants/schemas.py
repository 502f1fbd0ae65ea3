import functools

from django.db import connection
from django_tenants.utils import get_public_schema_name


def in_public_schema(func):
    """Run with the connection on the public schema, then restore the request's tenant schema.

    Tenant rows may only be saved from the public schema (django-tenants' guard), and platform admin
    actions must not depend on which tenant the caller happens to have selected.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        previous = connection.tenant if connection.schema_name != get_public_schema_name() else None
        connection.set_schema_to_public()
        try:
            return func(*args, **kwargs)
        finally:
            if previous is not None:
                connection.set_tenant(previous)

    return wrapper
