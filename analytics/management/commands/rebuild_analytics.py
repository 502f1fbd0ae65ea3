"""manage.py rebuild_analytics [--tenant SLUG_OR_SCHEMA]: recompute the message rollups from messages (every
active or suspended tenant, or one)."""
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django_tenants.utils import schema_context

from analytics import rollups
from analytics.tasks import COUNTED_STATUSES
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Recompute the analytics rollups of every tenant (or one) from its messages."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="a tenant's slug or schema name")

    def handle(self, *args, tenant=None, **options):
        tenants = Tenant.objects.filter(status__in=COUNTED_STATUSES)
        if tenant:
            tenants = tenants.filter(Q(slug=tenant) | Q(schema_name=tenant))
            if not tenants.exists():
                raise CommandError(f"No active or suspended tenant '{tenant}'.")
        for row in tenants.order_by("schema_name"):
            with schema_context(row.schema_name):
                messages = rollups.rebuild()
            self.stdout.write(f"{row.slug}: rollups rebuilt from {messages} messages")
