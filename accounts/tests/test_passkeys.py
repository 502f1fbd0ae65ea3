"""Passkeys (allauth's WebAuthn through fido2): added on the two-factor page, usable to sign in on their own, and
"trust this browser" after a second factor."""
from conftest import PASSWORD


def signed_in_by_password(client, user):
    """Signed in, then the password confirmed again: allauth asks for it before an authenticator is added."""
    client.force_login(user)
    response = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def test_the_passkey_pages_render_for_a_signed_in_user(client, named):
    signed_in_by_password(client, named.alice)
    html = client.get("/accounts/2fa/").content.decode()
    assert "/accounts/2fa/webauthn/" in html  # the two-factor page offers passkeys
    response = client.get("/accounts/2fa/webauthn/add/")
    assert response.status_code == 200
    assert "webauthn" in response.content.decode().lower()
    assert client.get("/accounts/2fa/webauthn/").status_code == 200


def test_the_login_page_offers_signing_in_with_a_passkey(client, db):
    html = client.get("/accounts/login/").content.decode()
    assert "passkey" in html.lower()
    assert 'id="passkey_login"' in html and 'action="/accounts/2fa/webauthn/login/"' in html


def test_passkey_setup_counts_as_two_factor_where_required(client, named, settings):
    from allauth.mfa.models import Authenticator

    settings.PLATFORM_ADMINS_REQUIRE_2FA = True
    Authenticator.objects.create(user=named.admin, type=Authenticator.Type.WEBAUTHN,
                                 data={"name": "Laptop", "credential": {}, "passwordless": True})
    client.force_login(named.admin)
    assert client.get("/accounts/email/").status_code == 200
