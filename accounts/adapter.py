import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.authentication import get_authentication_records
from allauth.core import context as allauth_context
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings
from django.db import transaction
from django.urls import reverse

from core import crypto
from core.tasks import send_email


@dataclass(frozen=True)
class Site:
    """What allauth's email templates read as current_site. Without django.contrib.sites allauth would take the
    request's host for both; the product's name is a setting and its domain that of SITE_URL."""

    name: str
    domain: str


def current_site():
    return Site(name=settings.SITE_NAME, domain=urlsplit(settings.SITE_URL).netloc)


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=False)
        user.full_name = form.cleaned_data.get("full_name", "")
        user.phone = form.cleaned_data.get("phone", "")
        if commit:
            user.save()
        return user

    def is_reauthentication_required(self, *, app, **kwargs):
        """allauth asks for the password again before an account-sensitive step (adding 2FA, a passkey, an
        address) unless the session holds a *re*authentication younger than ACCOUNT_REAUTHENTICATION_TIMEOUT; a
        sign-in with the password seconds ago does not count there. So a platform admin, sent to the 2FA setup
        right after signing in, was asked for the same password twice within seconds (found walking the README's
        tour). A password sign-in within that same timeout counts here as the reauthentication it is."""
        if not super().is_reauthentication_required(app=app, **kwargs):
            return False
        request = allauth_context.request
        if request is None or not request.user.is_authenticated:
            return True
        now = time.time()
        return not any(record.get("method") == "password"
                       and now - record.get("at", 0) < account_settings.REAUTHENTICATION_TIMEOUT
                       for record in get_authentication_records(request, request.user))

    def get_login_redirect_url(self, request):
        return reverse("home")

    def get_email_verification_redirect_url(self, email_address):
        return reverse("home")

    def send_mail(self, template_prefix, email, context):
        """allauth's emails leave through the worker, and only once the sign-up (or other change) committed."""

        context = {"request": allauth_context.request, "email": email, "current_site": current_site(), **context}
        message = self.render_mail(template_prefix, email, context)
        body = message.body
        transaction.on_commit(lambda: send_email.delay(to=email, subject=message.subject, body=body))


class MFAAdapter(DefaultMFAAdapter):
    """Two-factor secrets (the TOTP key, the recovery codes' seed) on the installation's keyring (core.crypto), like
    every stored secret; those written before it, in the clear, still read and are encrypted by
    rotate_encryption_key."""

    def encrypt(self, text):
        return crypto.encrypt_secret(text)

    def decrypt(self, encrypted_text):
        if not crypto.is_encrypted(encrypted_text):
            return encrypted_text
        return crypto.decrypt_secret(encrypted_text)
