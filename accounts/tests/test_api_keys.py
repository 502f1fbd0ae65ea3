"""API key lifecycle: created on the page or CLI, shown once, stored hashed, used, revoked."""
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import ApiKey
from audit.models import AuditLog
from tenants.models import Tenant


def database_contains(text):
    """True if any text column of any public table holds `text`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('character varying', 'text', 'jsonb')"
        )
        for table, column in cursor.fetchall():
            cursor.execute(f'SELECT 1 FROM "{table}" WHERE "{column}"::text LIKE %s LIMIT 1', [f"%{text}%"])
            if cursor.fetchone():
                return True
    return False


def create_on_page(client, name="CRM"):
    response = client.post("/dashboard/api-keys/", {"name": name}, follow=True)
    assert response.redirect_chain == [("/dashboard/api-keys/", 302)]
    match = re.search(r'value="(sb_[0-9a-f]{8}_[A-Za-z0-9_-]+)"', response.content.decode())
    return match.group(1), response


def test_key_is_shown_once_stored_hashed_and_works(client, named):
    client.force_login(named.alice)
    raw, response = create_on_page(client)
    assert b"will not be shown again" in response.content
    key = ApiKey.objects.get(user=named.alice)
    assert raw.startswith(key.prefix + "_") and key.tenant == named.acme
    assert not database_contains(raw)
    assert not database_contains(raw.split("_", 2)[2])
    # The list shows the prefix but never the key again.
    listing = client.get("/dashboard/api-keys/").content.decode()
    assert key.prefix in listing and raw not in listing

    from rest_framework.test import APIClient

    api = APIClient()
    assert key.last_used_at is None
    response = api.get("/api/v1/me", HTTP_X_API_KEY=raw)
    assert response.status_code == 200 and response.json()["data"]["tenant"]["slug"] == "acme"
    key.refresh_from_db()
    assert key.last_used_at is not None
    listing = client.get("/dashboard/api-keys/").content.decode()
    assert "never" not in listing


def test_last_used_is_written_at_most_once_a_minute(named, api_as):
    api = api_as(named.alice)
    api.get("/api/v1/me")
    key = ApiKey.objects.get(user=named.alice)
    first = key.last_used_at
    api.get("/api/v1/me")
    key.refresh_from_db()
    assert key.last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=5))
    api.get("/api/v1/me")
    key.refresh_from_db()
    assert key.last_used_at > first - timedelta(minutes=1)


def test_revoked_key_is_refused_with_its_own_code(client, named, api_as):
    api = api_as(named.alice)
    key = ApiKey.objects.get(user=named.alice)
    client.force_login(named.alice)
    response = client.post(f"/dashboard/api-keys/{key.pk}/revoke", follow=True)
    assert b"revoked" in response.content
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"
    assert AuditLog.objects.filter(action="api_key.revoked", actor=named.alice).count() == 1


def test_unknown_key_is_401(named):
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION="Bearer sb_00000000_nope")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_user_cannot_revoke_someone_elses_key(client, named, api_as):
    api_as(named.carol)
    carol_key = ApiKey.objects.get(user=named.carol)
    api_as(named.bob)
    bob_key = ApiKey.objects.get(user=named.bob)
    client.force_login(named.alice)
    assert client.post(f"/dashboard/api-keys/{carol_key.pk}/revoke").status_code == 404
    assert client.post(f"/dashboard/api-keys/{bob_key.pk}/revoke").status_code == 404
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    listing = client.get("/dashboard/api-keys/").content.decode()
    assert carol_key.prefix not in listing and bob_key.prefix not in listing


def test_refreshing_after_creating_a_key_creates_nothing_and_shows_it_no_more(client, named):
    client.force_login(named.alice)
    response = client.post("/dashboard/api-keys/", {"name": "CRM"})
    # POST -> redirect -> GET: the key is not in the address, and a refresh (the GET again) repeats no POST.
    assert response.status_code == 302 and response["Location"] == "/dashboard/api-keys/"
    first = client.get("/dashboard/api-keys/")
    raw = re.search(r'value="(sb_[0-9a-f]{8}_[A-Za-z0-9_-]+)"', first.content.decode()).group(1)
    assert raw not in response["Location"]
    assert "no-store" in first["Cache-Control"]  # not kept by the browser or a proxy either
    refreshed = client.get("/dashboard/api-keys/")
    assert raw not in refreshed.content.decode() and 'data-testid="new-key"' not in refreshed.content.decode()
    assert ApiKey.objects.filter(user=named.alice).count() == 1


def test_empty_key_name_is_refused_on_the_page(client, named):
    client.force_login(named.alice)
    response = client.post("/dashboard/api-keys/", {"name": "  "}, follow=True)
    assert b"Give the key a name" in response.content
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("status", ["pending", "suspended", "rejected", "provisioning"])
def test_users_of_inactive_tenants_get_a_clear_api_error(named, api_as, status):
    api = api_as(named.alice)
    Tenant.objects.filter(pk=named.acme.pk).update(status=status)
    response = api.get("/api/v1/me")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == f"tenant_{status}"


def test_keys_of_inactive_tenants_cannot_use_the_dashboard(client, named):
    Tenant.objects.filter(pk=named.acme.pk).update(status="pending")
    client.force_login(named.alice)
    response = client.get("/dashboard/api-keys/", follow=True)
    assert response.redirect_chain[-1][0] == "/awaiting-approval/"


def test_create_api_key_command_prints_the_key_once(named):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "alice@acme.test", "--name", "deploy", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(name="deploy")
    assert raw.startswith(key.prefix) and key.tenant == named.acme
    assert "Shown once" in err.getvalue()
    assert not database_contains(raw)


def test_create_api_key_command_errors(named):
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_key", "nobody@x.test")
    with pytest.raises(CommandError, match="not a member"):
        call_command("create_api_key", "alice@acme.test", "--tenant", "globex")
    call_command("create_api_key", "admin@platform.test", stdout=StringIO(), stderr=StringIO())
    assert ApiKey.objects.get(user=named.admin).tenant is None


def test_admin_key_without_tenant_reads_platform_but_me_has_no_tenant(named, api_as):
    api = api_as(named.admin)
    data = api.get("/api/v1/me").json()["data"]
    assert data["user"]["is_platform_admin"] is True and data["tenant"] is None
    assert api.get("/api/v1/tenants").status_code == 200


def test_api_key_endpoints_create_list_and_revoke(named, api_as):
    api = api_as(named.alice)
    response = api.post("/api/v1/api-keys", {"name": "worker"}, format="json")
    assert response.status_code == 201
    created = response.json()["data"]
    assert created["key"].startswith(created["prefix"] + "_") and not database_contains(created["key"])
    listing = api.get("/api/v1/api-keys").json()
    assert {k["name"] for k in listing["data"]} == {"test", "worker"}
    assert "key" not in listing["data"][0]
    assert api.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204
    assert ApiKey.objects.get(pk=created["id"]).is_revoked
    response = api.post("/api/v1/api-keys", {"name": ""}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"


def test_api_keys_of_others_are_404(named, api_as):
    carol = api_as(named.carol)
    bob = api_as(named.bob)
    alice = api_as(named.alice)
    carol_key = ApiKey.objects.get(user=named.carol)
    bob_key = ApiKey.objects.get(user=named.bob)
    assert alice.delete(f"/api/v1/api-keys/{carol_key.pk}").status_code == 404
    assert alice.delete(f"/api/v1/api-keys/{bob_key.pk}").status_code == 404
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert [k["prefix"] for k in carol.get("/api/v1/api-keys").json()["data"]] == [carol_key.prefix]
    # bob is an agent: his role has no key management (core.permissions); revoking his own key stays possible.
    assert bob.get("/api/v1/api-keys").status_code == 403
    assert bob.delete(f"/api/v1/api-keys/{bob_key.pk}").status_code == 204
