from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.actions import create_api_key
from core.errors import DomainError
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Create an API key for a user and print it once. Without --tenant: the user's only tenant."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--tenant", help="Tenant slug (required when the user belongs to several)")
        parser.add_argument("--name", default="CLI key")

    def handle(self, email, tenant=None, name="CLI key", **options):
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email}")
        if tenant:
            tenant_obj = Tenant.objects.filter(slug=tenant, memberships__user=user).first()
            if tenant_obj is None:
                raise CommandError(f"{email} is not a member of a tenant with slug '{tenant}'")
        else:
            tenants = list(Tenant.objects.filter(memberships__user=user).exclude(status=Tenant.Status.POOLED))
            if len(tenants) > 1:
                slugs = ", ".join(t.slug for t in tenants)
                raise CommandError(f"{email} belongs to several tenants; pass --tenant (one of: {slugs})")
            tenant_obj = tenants[0] if tenants else None
        try:
            key, raw = create_api_key(user=user, tenant=tenant_obj, name=name)
        except DomainError as exc:
            raise CommandError(exc.message)
        scope = f"tenant {tenant_obj.slug}" if tenant_obj else "platform admin (no tenant)"
        self.stderr.write(f"API key '{key.name}' ({key.prefix}) for {email}, {scope}. Shown once:")
        self.stdout.write(raw)
