"""manage.py rotate_encryption_key: re-encrypt every stored secret, message body and media file with the newest key
of WHATSAPP_ENCRYPTION_KEY (core.keyrotation), printing progress per tenant. Safe to stop and run again.

    manage.py rotate_encryption_key --new-key      print a new key to put first in WHATSAPP_ENCRYPTION_KEY
    manage.py rotate_encryption_key                re-encrypt everything (--tenant slug for some, --batch-size)
    manage.py rotate_encryption_key --check        count what still needs it; exit 1 unless nothing does
"""
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from core import crypto, keyrotation


class Command(BaseCommand):
    help = "Re-encrypt stored secrets, message bodies and media with the newest key of WHATSAPP_ENCRYPTION_KEY."

    def add_arguments(self, parser):
        parser.add_argument("--new-key", action="store_true", help="Print a new key and do nothing else.")
        parser.add_argument("--check", action="store_true",
                            help="Only count the values and files not yet under the newest key; exit 1 if any.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")
        parser.add_argument("--tenant", action="append", default=[],
                            help="Only this tenant (slug or schema; repeat for several). Skips the public schema.")
        parser.add_argument("--skip-files", action="store_true", help="Leave the media files alone.")

    def handle(self, *args, **options):
        if options["new_key"]:
            self.stdout.write(crypto.generate_key())
            return
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            crypto.newest()
            crypto.check_messages_key()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        only = options["tenant"] or None
        if only and len(keyrotation.tenant_schemas(only)) < len(set(only)):
            raise CommandError(f"No tenant with an existing schema among: {', '.join(only)}.")
        keys = len(crypto.configured_keys())
        if options["check"]:
            stale, unreadable = keyrotation.pending(only=only)
            self.stdout.write(f"{stale} value(s) or file(s) not under the newest key; {unreadable} no key opens.")
            if stale or unreadable:
                raise CommandError("Rotation is not finished: run manage.py rotate_encryption_key.")
            self.stdout.write(self.style.SUCCESS(
                "Everything is under the newest key: the older keys may be dropped." if keys > 1 else "Nothing to do."))
            return
        self.stdout.write(f"Re-encrypting with the newest of {keys} configured key(s)"
                          f"{'' if keys else ' (none configured: the key derived from SECRET_KEY)'}; "
                          f"message bodies {'encrypted' if crypto.messages_encrypted() else 'in the clear'}.")

        def report(where, label, done, total):
            self.stdout.write(f"{where}: {label} {done}/{total}")

        totals = keyrotation.rotate(batch_size=options["batch_size"], only=only, files=not options["skip_files"],
                                    public=not only, report=report)
        self.stdout.write(f"Done: {totals.scanned} scanned, {totals.rewritten} re-encrypted, "
                          f"{totals.unreadable} unreadable.")
        if totals.unreadable:
            for where in totals.unreadable_where[:20]:
                self.stderr.write(f"  unreadable: {where}")
            raise CommandError(f"{totals.unreadable} value(s) or file(s) were encrypted with a key that is not in "
                               "WHATSAPP_ENCRYPTION_KEY: put it back (after the newest) and run this again.")
        self.stdout.write(self.style.SUCCESS("Everything is under the newest key: the older keys may be dropped."))
