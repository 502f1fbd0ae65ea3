"""Two-factor authentication where it is required: of every platform admin, and of the members of a workspace
whose owner requires it (Tenant.require_2fa). Such a user without an authenticator is sent to allauth's TOTP setup
page on every page until they add one. The API is left alone: API keys are machine access, and a key's holder has
no second factor to show."""
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse


def _exempt_prefixes():
    # The setup pages themselves (TOTP, passkeys, recovery codes), the reauthentication they may ask for, the email
    # confirmation a new account needs before it can sign in, and the way out.
    return ("/api/", settings.STATIC_URL, settings.MEDIA_URL, "/accounts/2fa/", "/accounts/reauthenticate/",
            reverse("account_logout"), "/accounts/confirm-email/", "/health", "/metrics")


def two_factor_required(request):
    user = request.user
    if not user.is_authenticated:
        return False
    tenant = getattr(request, "tenant", None)
    if user.is_platform_admin and settings.PLATFORM_ADMINS_REQUIRE_2FA:
        return True
    return bool(tenant is not None and tenant.require_2fa)


class TwoFactorRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (two_factor_required(request) and not request.path.startswith(_exempt_prefixes())
                and not is_mfa_enabled(request.user, types=["totp", "webauthn"])):
            return redirect("mfa_activate_totp")
        return self.get_response(request)
