"""Two-factor authentication where it is required: of every platform admin, and of the members of a workspace
whose owner requires it (Tenant.require_2fa). Such a user without an authenticator is sent to allauth's TOTP setup
page on every page until they add one. On /api/ the same user calling with the browser's session cookie gets
403 two_factor_required (a session is a person's, and the requirement is about the person); API keys are left alone:
they are machine access, and a key's holder has no second factor to show."""
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from core.api import error_body

from .authentication import raw_key_of
from .errors import AccountError


def _exempt_prefixes():
    # The setup pages themselves (TOTP, passkeys, recovery codes), the reauthentication they may ask for, the email
    # confirmation a new account needs before it can sign in, and the way out.
    return (settings.STATIC_URL, settings.MEDIA_URL, "/accounts/2fa/", "/accounts/reauthenticate/",
            reverse("account_logout"), "/accounts/confirm-email/", "/health", "/metrics")


def two_factor_required(request):
    user = request.user
    if not user.is_authenticated:
        return False
    tenant = getattr(request, "tenant", None)
    if user.is_platform_admin and settings.PLATFORM_ADMINS_REQUIRE_2FA:
        return True
    return bool(tenant is not None and tenant.require_2fa)


# The schema and its docs page are public (anyone may read them): no second factor needed to read them either.
_PUBLIC_API_DOCS = ("/api/schema/", "/api/docs/")


class TwoFactorRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            if (not request.path.startswith(_PUBLIC_API_DOCS) and raw_key_of(request) is None and two_factor_required(request)
                    and not is_mfa_enabled(request.user, types=["totp", "webauthn"])):
                return JsonResponse(error_body(
                    AccountError.TWO_FACTOR_REQUIRED.value,
                    "Set up two-factor authentication for your account before using the API with your browser "
                    "session; it is required of you here. API keys keep working.",
                    {"setup_url": reverse("mfa_activate_totp")}), status=403)
            return self.get_response(request)
        if (two_factor_required(request) and not request.path.startswith(_exempt_prefixes())
                and not is_mfa_enabled(request.user, types=["totp", "webauthn"])):
            return redirect("mfa_activate_totp")
        return self.get_response(request)
