"""Deploy checks (`manage.py check --deploy`) for what Django's own don't know: settings that would make a
production installation quietly useless."""
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

from . import crypto

LOCAL_HOSTS = {"localhost", ".localhost", "127.0.0.1", "[::1]"}
SILENT_EMAIL = {"django.core.mail.backends.console.EmailBackend", "django.core.mail.backends.locmem.EmailBackend",
                "django.core.mail.backends.dummy.EmailBackend", "django.core.mail.backends.filebased.EmailBackend"}


@checks.register(checks.Tags.security, deploy=True)
def production_settings(app_configs=None, **kwargs):
    found = []
    if settings.EMAIL_BACKEND in SILENT_EMAIL:
        found.append(checks.Error(
            f"Emails are not sent ({settings.EMAIL_BACKEND}): sign-up confirmations, password resets and alerts "
            "would never reach anyone.", hint="Set EMAIL_URL, e.g. smtp://user:password@smtp.example.com:587/?tls=True",
            id="switchboard.E001"))
    hosts = set(settings.ALLOWED_HOSTS)
    if not hosts or "*" in hosts or hosts <= LOCAL_HOSTS:
        found.append(checks.Error(
            f"ALLOWED_HOSTS is {sorted(hosts) or 'empty'}: the site's own host name must be listed, and only it.",
            hint="Set ALLOWED_HOSTS, e.g. switchboard.example.com", id="switchboard.E002"))
    site = urlsplit(settings.SITE_URL)
    if site.scheme != "https" or site.hostname in {"localhost", "127.0.0.1", "::1", None}:
        found.append(checks.Error(
            f"SITE_URL is {settings.SITE_URL}: links in emails and webhooks point there, so it must be the public "
            "https address.", hint="Set SITE_URL, e.g. https://switchboard.example.com", id="switchboard.E003"))
    return found


@checks.register(checks.Tags.security)
def encryption_keys(app_configs=None, **kwargs):
    """A keyring that cannot work stops the installation here rather than at the first stored message."""
    found = [checks.Error(problem, hint="Make one with: manage.py rotate_encryption_key --new-key",
                          id="switchboard.E004") for problem in crypto.key_problems()]
    if settings.WHATSAPP_ENCRYPT_MESSAGES and not crypto.configured_keys():
        found.append(checks.Error(
            "WHATSAPP_ENCRYPT_MESSAGES is on but WHATSAPP_ENCRYPTION_KEY is empty: messages could not be stored.",
            hint="Set WHATSAPP_ENCRYPTION_KEY to a key made by: manage.py rotate_encryption_key --new-key",
            id="switchboard.E005"))
    return found


@checks.register(checks.Tags.security, deploy=True)
def encryption_key_set(app_configs=None, **kwargs):
    if settings.WHATSAPP_ENCRYPTION_KEY:
        return []
    return [checks.Warning(
        "WHATSAPP_ENCRYPTION_KEY is empty: stored secrets (webhook and bot signing secrets, 2FA keys) are encrypted "
        "with a key derived from SECRET_KEY, and changing SECRET_KEY would make them unreadable.",
        hint="Set WHATSAPP_ENCRYPTION_KEY (manage.py rotate_encryption_key --new-key makes one), then run "
             "manage.py rotate_encryption_key to move the stored secrets onto it.", id="switchboard.W001")]
