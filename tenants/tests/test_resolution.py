"""The tenant comes from the verified principal; selectors only choose among the principal's tenants."""
import pytest
from django.core.cache import cache
from django.db import connection

from accounts.models import Membership


def slug_of(response):
    return response.json()["data"]["tenant"]["slug"]


def test_api_key_runs_in_its_tenant_schema(named, api_as):
    api = api_as(named.carol)
    assert slug_of(api.get("/api/v1/me")) == "globex"


@pytest.mark.parametrize("header, value", [("HTTP_X_TENANT_SLUG", "globex"), ("HTTP_X_TENANT_ID", "{globex}")])
def test_api_key_with_another_tenants_selector_is_404(named, api_as, header, value):
    api = api_as(named.alice)
    response = api.get("/api/v1/me", **{header: value.format(globex=named.globex.pk)})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_api_key_with_its_own_selector_is_fine(named, api_as):
    api = api_as(named.alice)
    assert slug_of(api.get("/api/v1/me", HTTP_X_TENANT_SLUG="acme")) == "acme"
    assert slug_of(api.get("/api/v1/me", HTTP_X_TENANT_ID=str(named.acme.pk))) == "acme"


def test_subdomain_of_another_tenant_is_404(named, api_as, settings):
    settings.ALLOWED_HOSTS = [".localhost", "testserver"]
    api = api_as(named.alice)
    assert api.get("/api/v1/me", HTTP_HOST="globex.localhost").status_code == 404
    assert slug_of(api.get("/api/v1/me", HTTP_HOST="acme.localhost")) == "acme"


def test_session_user_selects_among_own_tenants_only(client, named, settings):
    settings.ALLOWED_HOSTS = [".localhost", "testserver"]
    Membership.objects.create(user=named.alice, tenant=named.globex, role=Membership.Role.ADMIN)
    client.force_login(named.bob)
    assert slug_of(client.get("/api/v1/me")) == "acme"
    assert client.get("/api/v1/me", HTTP_X_TENANT_SLUG="globex").status_code == 404
    assert client.get("/dashboard/", HTTP_HOST="globex.localhost").status_code == 404
    assert client.get("/dashboard/", HTTP_X_TENANT_ID="999999").status_code == 404

    client.force_login(named.alice)
    assert slug_of(client.get("/api/v1/me", HTTP_X_TENANT_SLUG="globex")) == "globex"
    assert slug_of(client.get("/api/v1/me", HTTP_HOST="globex.localhost")) == "globex"
    # Switching is remembered in the session.
    client.post(f"/switch/{named.globex.pk}")
    assert slug_of(client.get("/api/v1/me")) == "globex"
    assert b"Globex" in client.get("/dashboard/").content
    # Switching to a tenant she doesn't belong to is 404 and changes nothing.
    other = named.acme
    Membership.objects.filter(user=named.alice, tenant=other).delete()
    assert client.post(f"/switch/{other.pk}").status_code == 404


def test_request_runs_in_the_tenant_schema_and_cache_keys_carry_it(named, api_as, client):
    client.force_login(named.carol)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert connection.schema_name == "public"  # reset after every request

    connection.set_tenant(named.acme)
    try:
        key_acme = cache.make_key("greeting")
        cache.set("greeting", "hello acme", 30)
    finally:
        connection.set_schema_to_public()
    connection.set_tenant(named.globex)
    try:
        assert cache.make_key("greeting") != key_acme
        assert cache.get("greeting") is None
    finally:
        connection.set_schema_to_public()
    assert named.acme.schema_name in key_acme
