"""manage.py backup_keygen: a new age key pair for BACKUP_AGE_RECIPIENTS. Keep the identity (secret) away from the
server, e.g. in the operators' password manager: it is what a restore asks for."""
from django.core.management.base import BaseCommand
from pyrage import x25519


class Command(BaseCommand):
    help = "Print a new age identity and its public key (for BACKUP_AGE_RECIPIENTS)."

    def handle(self, *args, **options):
        identity = x25519.Identity.generate()
        self.stdout.write(f"# public key: {identity.to_public()}\n{identity}")
        self.stderr.write(f"Set BACKUP_AGE_RECIPIENTS={identity.to_public()} and keep the AGE-SECRET-KEY line off "
                          "the server.")
