"""The workspace's settings: name, time zone, locale, default webhook URL, by its owners and admins; audited."""
import pytest

from accounts.models import Membership
from audit.models import AuditLog
from conftest import make_user
from tenants.models import Tenant


def test_members_read_the_settings_and_managers_change_them(named, api_as):
    alice, bob = api_as(named.alice), api_as(named.bob)
    data = bob.get("/api/v1/workspace").json()["data"]
    assert data == {"id": named.acme.pk, "name": "Acme", "slug": "acme", "timezone": "UTC", "locale": "en",
                    "webhook_url": "", "require_2fa": False}
    response = alice.patch("/api/v1/workspace", {"name": " Acme Trading ", "timezone": "Asia/Jakarta",
                                                 "locale": "id", "webhook_url": "https://hooks.example.com/wa"},
                           format="json")
    assert response.status_code == 200
    assert response.json()["data"] == {"id": named.acme.pk, "name": "Acme Trading", "slug": "acme",
                                       "timezone": "Asia/Jakarta", "locale": "id",
                                       "webhook_url": "https://hooks.example.com/wa", "require_2fa": False}
    tenant = Tenant.objects.get(pk=named.acme.pk)
    assert (tenant.name, tenant.timezone, tenant.locale) == ("Acme Trading", "Asia/Jakarta", "id")
    row = AuditLog.objects.get(action="tenant.settings_updated", tenant=named.acme)
    assert row.actor == named.alice
    assert row.before == {"name": "Acme", "timezone": "UTC", "locale": "en", "webhook_url": ""}
    assert row.after["timezone"] == "Asia/Jakarta" and row.after["name"] == "Acme Trading"
    # Only what changed is recorded; a PATCH that changes nothing writes no row.
    alice.patch("/api/v1/workspace", {"locale": "de", "timezone": "Asia/Jakarta"}, format="json")
    assert AuditLog.objects.filter(action="tenant.settings_updated").latest("id").after == {"locale": "de"}
    alice.patch("/api/v1/workspace", {"locale": "de"}, format="json")
    assert AuditLog.objects.filter(action="tenant.settings_updated").count() == 2
    # An agent may not change them; another workspace's are untouched.
    response = bob.patch("/api/v1/workspace", {"name": "Bob's"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert Tenant.objects.get(pk=named.globex.pk).timezone == "UTC"


@pytest.mark.parametrize("body, code", [
    ({"timezone": "Mars/Olympus"}, "validation_error"),
    ({"timezone": "utc"}, "validation_error"),
    ({"locale": "xx"}, "validation_error"),
    ({"name": "   "}, "validation_error"),
    ({"name": "!!!"}, "invalid_name"),
    ({"name": "x" * 121}, "validation_error"),
    ({"webhook_url": "ftp://example.com"}, "invalid_url"),
    ({"webhook_url": "https://user:pw@example.com/x"}, "invalid_url"),
    ({"slug": "new"}, "validation_error"),
])
def test_bad_settings_are_refused_and_nothing_changes(named, api_as, body, code):
    response = api_as(named.alice).patch("/api/v1/workspace", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code, response.json()
    tenant = Tenant.objects.get(pk=named.acme.pk)
    assert (tenant.name, tenant.timezone, tenant.locale, tenant.webhook_url) == ("Acme", "UTC", "en", "")
    assert not AuditLog.objects.filter(action="tenant.settings_updated").exists()


def test_a_scoped_key_needs_manage_to_change_them(named):
    from accounts.actions import create_api_key
    from accounts.tests.test_api_key_scopes import key_client

    _, raw = create_api_key(user=named.alice, tenant=named.acme, name="r", scopes=["read"])
    api = key_client(raw)
    assert api.get("/api/v1/workspace").status_code == 200
    response = api.patch("/api/v1/workspace", {"timezone": "Asia/Jakarta"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


def test_the_settings_page_saves_and_redirects(client, named):
    client.force_login(named.alice)
    page = client.get("/dashboard/settings/")
    assert page.status_code == 200 and b'data-testid="nav-settings"' in page.content
    assert b'<option value="Asia/Jakarta">' in page.content
    response = client.post("/dashboard/settings/", {"name": "Acme Ltd", "timezone": "Europe/Berlin", "locale": "de",
                                                    "webhook_url": "https://hooks.example.com/in"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/settings/"
    tenant = Tenant.objects.get(pk=named.acme.pk)
    assert (tenant.name, tenant.timezone, tenant.locale) == ("Acme Ltd", "Europe/Berlin", "de")
    # The pages now speak German (Django's own texts and dates) and say so.
    page = client.get("/dashboard/settings/")
    assert b'<html lang="de">' in page.content
    # The API does not change language.
    assert client.get("/api/v1/workspace").json()["data"]["locale"] == "de"
    # A new webhook endpoint starts at the default URL.
    assert b'value="https://hooks.example.com/in"' in client.get("/webhooks/").content
    response = client.post("/dashboard/settings/", {"name": "Acme Ltd", "timezone": "Nowhere/Land", "locale": "de",
                                                    "webhook_url": ""})
    assert response.status_code == 400 and b"Nowhere/Land" in response.content
    assert Tenant.objects.get(pk=named.acme.pk).timezone == "Europe/Berlin"


@pytest.mark.parametrize("role, allowed", [("owner", True), ("admin", True), ("agent", False), ("viewer", False)])
def test_only_owners_and_admins_have_the_page(client, named, role, allowed):
    user = make_user(f"{role}-ws@acme.test")
    Membership.objects.create(user=user, tenant=named.globex, role=role)
    client.force_login(user)
    page = client.get("/dashboard/settings/")
    assert page.status_code == (200 if allowed else 403)
    dashboard = client.get("/dashboard/")
    assert (b'data-testid="nav-settings"' in dashboard.content) == allowed


def test_analytics_and_business_hours_read_the_changed_time_zone(named, api_as, monkeypatch):
    from analytics.selectors import zone_of
    from whatsapp.automation import engine

    # The engine keeps each workspace's zone a while: this test's own cache, so no later test finds Jakarta in it.
    monkeypatch.setattr(engine, "_time_zones", {})
    api_as(named.alice).patch("/api/v1/workspace", {"timezone": "Asia/Jakarta"}, format="json")
    tenant = Tenant.objects.get(pk=named.acme.pk)
    assert str(zone_of(tenant)) == "Asia/Jakarta"
    assert engine.workspace_time_zone(tenant.schema_name) == "Asia/Jakarta"
