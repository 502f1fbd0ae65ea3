from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction
from django.urls import reverse

from core.tasks import send_email


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=False)
        user.full_name = form.cleaned_data.get("full_name", "")
        user.phone = form.cleaned_data.get("phone", "")
        if commit:
            user.save()
        return user

    def get_login_redirect_url(self, request):
        return reverse("home")

    def get_email_verification_redirect_url(self, email_address):
        return reverse("home")

    def send_mail(self, template_prefix, email, context):
        """allauth's emails leave through the worker, and only once the sign-up (or other change) committed."""

        message = self.render_mail(template_prefix, email, context)
        body = message.body
        transaction.on_commit(lambda: send_email.delay(to=email, subject=message.subject, body=body))
