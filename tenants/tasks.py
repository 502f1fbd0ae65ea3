"""Celery's autodiscovery imports <app>.tasks: each of tenants' tasks is defined beside the function it runs (so
the actions that queue them need not import this module)."""
from .actions import provision_tenant  # noqa: F401
from .notify import announce_tenant_change  # noqa: F401
from .pool import refill_tenant_pool  # noqa: F401
