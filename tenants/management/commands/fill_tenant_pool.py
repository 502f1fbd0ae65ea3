from django.conf import settings
from django.core.management.base import BaseCommand

from tenants import pool


class Command(BaseCommand):
    help = "Create and migrate pooled tenant schemas until TENANT_POOL_SIZE are ready."

    def add_arguments(self, parser):
        parser.add_argument("--size", type=int, default=None)

    def handle(self, size=None, **options):
        created = pool.fill_pool(size)
        size = settings.TENANT_POOL_SIZE if size is None else size
        self.stdout.write(f"Tenant pool: {pool.pooled_count()} ready (target {size}, created {created} now)")
