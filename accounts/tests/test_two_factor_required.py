"""Two-factor authentication where it is required: every platform admin, and the members of a workspace whose
owner requires it. Without an authenticator such a user is sent to allauth's TOTP setup page on every page; the
API (keys) is not affected."""
import time
from unittest import mock

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from audit.models import AuditLog
from conftest import PASSWORD
from tenants.models import Tenant

SETUP = "/accounts/2fa/totp/activate/"


def with_totp(user):
    TOTP.activate(user, generate_totp_secret())
    return user


def test_a_platform_admin_without_2fa_is_sent_to_the_setup_page_until_they_add_it(client, named, settings, api_as):
    settings.PLATFORM_ADMINS_REQUIRE_2FA = True
    client.force_login(named.admin)
    for path in ("/", "/platform/", "/accounts/email/", "/accounts/password/change/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == SETUP, path
    # The setup page (which first asks for the password again) is reachable.
    response = client.get(SETUP, follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0].startswith("/accounts/reauthenticate/")
    assert client.get("/static/css/app.css").status_code != 302
    # Their API keys still work: machine access has no second factor to show.
    assert api_as(named.admin).get("/api/v1/me").status_code == 200
    with_totp(named.admin)
    assert client.get("/accounts/email/").status_code == 200
    # Members of a workspace that does not require it are not concerned.
    client.force_login(named.alice)
    assert client.get("/dashboard/settings/").status_code == 200


def test_an_owner_requires_2fa_of_the_workspace_members(client, named, api_as):
    alice = api_as(named.alice)
    # Not without their own first: they would lock themselves out.
    response = alice.patch("/api/v1/workspace", {"require_2fa": True}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "two_factor_not_set_up"
    assert not Tenant.objects.get(pk=named.acme.pk).require_2fa
    with_totp(named.alice)
    response = alice.patch("/api/v1/workspace", {"require_2fa": True}, format="json")
    assert response.status_code == 200 and response.json()["data"]["require_2fa"] is True
    row = AuditLog.objects.get(action="tenant.settings_updated", tenant=named.acme)
    assert (row.before, row.after, row.actor) == ({"require_2fa": False}, {"require_2fa": True}, named.alice)

    # Bob (agent, no 2FA) is sent to the setup page from the workspace's pages; his API key still works.
    client.force_login(named.bob)
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response["Location"] == SETUP
    assert api_as(named.bob).get("/api/v1/workspace").status_code == 200
    with_totp(named.bob)
    assert client.get("/dashboard/").status_code == 200
    # Another workspace is not concerned.
    client.force_login(named.carol)
    assert client.get("/dashboard/").status_code == 200


def test_only_an_owner_changes_the_requirement(named, api_as):
    from accounts.models import Membership

    Membership.objects.filter(user=named.bob).update(role=Membership.Role.ADMIN)
    with_totp(named.bob)
    response = api_as(named.bob).patch("/api/v1/workspace", {"require_2fa": True}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert not Tenant.objects.get(pk=named.acme.pk).require_2fa
    # Their other settings they still change.
    assert api_as(named.bob).patch("/api/v1/workspace", {"timezone": "Asia/Jakarta"}, format="json").status_code == 200


@pytest.mark.parametrize("checked", [True, False])
def test_the_settings_page_offers_the_requirement_to_owners_only(client, named, checked):
    with_totp(named.alice)
    client.force_login(named.alice)
    html = client.get("/dashboard/settings/").content.decode()
    assert 'name="require_2fa"' in html
    body = {"name": "Acme", "timezone": "UTC", "locale": "en", "webhook_url": ""}
    if checked:
        body["require_2fa"] = "on"
    response = client.post("/dashboard/settings/", body)
    assert response.status_code == 302
    assert Tenant.objects.get(pk=named.acme.pk).require_2fa is checked
    client.force_login(named.bob)  # an agent does not see the settings page at all
    Tenant.objects.filter(pk=named.acme.pk).update(require_2fa=False)
    assert client.get("/dashboard/settings/").status_code in (403, 404)


def test_a_password_sign_in_moments_ago_counts_as_the_reauthentication_the_setup_asks_for(client, named, settings):
    """The README tour: the first platform admin signs in and is sent to the 2FA setup. allauth alone asked for
    the same password again at once; a password sign-in younger than ACCOUNT_REAUTHENTICATION_TIMEOUT counts."""
    settings.PLATFORM_ADMINS_REQUIRE_2FA = True
    response = client.post("/accounts/login/", {"login": named.admin.email, "password": PASSWORD})
    assert response.status_code == 302
    response = client.get(SETUP)
    assert response.status_code == 200 and "reauthenticate" not in response.get("Location", "")
    # Once the timeout (allauth's default, 300 s) has passed, the password is asked again, as allauth intends.
    later = time.time() + 301
    with mock.patch("accounts.adapter.time.time", return_value=later), \
            mock.patch("allauth.account.internal.flows.reauthentication.time.time", return_value=later):
        response = client.get(SETUP)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/reauthenticate/")


def _refused(response):
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "two_factor_required"
    assert body["error"]["details"] == {"setup_url": SETUP}


def test_the_api_with_a_session_cookie_needs_the_second_factor_a_key_does_not(client, named, settings, api_as):
    settings.PLATFORM_ADMINS_REQUIRE_2FA = True
    client.force_login(named.admin)
    _refused(client.get("/api/v1/me"))
    _refused(client.get("/api/v1/tenants"))
    _refused(client.post("/api/v1/api-keys", {"name": "mine"}, content_type="application/json"))
    # The key, sent with or without the session cookie, is the principal: it keeps working.
    assert api_as(named.admin).get("/api/v1/me").status_code == 200
    key = api_as(named.admin).raw_key
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert client.get("/api/v1/me", HTTP_X_API_KEY=key).status_code == 200
    # The public schema and its docs page stay readable.
    assert client.get("/api/schema/?format=json").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    with_totp(named.admin)
    assert client.get("/api/v1/me").status_code == 200


def test_the_api_with_a_session_cookie_follows_the_workspace_requirement(client, named, api_as):
    with_totp(named.alice)
    Tenant.objects.filter(pk=named.acme.pk).update(require_2fa=True)
    client.force_login(named.bob)
    _refused(client.get("/api/v1/workspace"))
    _refused(client.get("/api/v1/messages"))
    assert api_as(named.bob).get("/api/v1/workspace").status_code == 200
    client.force_login(named.alice)  # she has it
    assert client.get("/api/v1/workspace").status_code == 200
    client.force_login(named.carol)  # Globex does not require it
    assert client.get("/api/v1/workspace").status_code == 200
    # Not signed in: the ordinary 401/403, not this.
    client.logout()
    assert client.get("/api/v1/workspace").json()["error"]["code"] != "two_factor_required"
