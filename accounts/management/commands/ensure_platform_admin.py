from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.actions import ensure_platform_admin


class Command(BaseCommand):
    help = "Create the first platform admin if there is none; print its credentials on that first run only."

    def handle(self, **options):
        user, password = ensure_platform_admin()
        if password is None:
            self.stdout.write(f"Platform admin: {user.email} (already set up)")
            return
        bar = "=" * 64
        self.stdout.write(
            f"\n{bar}\n  First platform admin created\n  Log in at {settings.SITE_URL}/accounts/login/\n"
            f"  email:    {user.email}\n  password: {password}\n  (shown once; change it after logging in)\n{bar}\n"
        )
