"""API key scopes, expiry and rotation. The scope each endpoint needs comes from the permission table
(core.permissions.SCOPES, by the permission the view declares): the scope × endpoint matrix is generated from it."""
import datetime
import re

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.actions import create_api_key, rotate_api_key
from accounts.models import ApiKey
from audit.models import AuditLog
from core.permissions import SCOPES, Perm, Scope, declared_permission, scope_needed
from tests.test_permission_matrix import _api_operations, _filled


def key_client(raw):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api


@pytest.fixture
def travel(monkeypatch):
    """Move the clock the code reads (django.utils.timezone.now) by a timedelta: no sleeping."""
    real_now = timezone.now
    offset = {"by": datetime.timedelta()}
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset["by"])

    def move(**kwargs):
        offset["by"] += datetime.timedelta(**kwargs)

    return move


def test_every_permission_names_its_scope_or_none():
    assert set(SCOPES) == set(Perm)
    assert {scope for scope in SCOPES.values() if scope is not None} == set(Scope)
    assert SCOPES[Perm.PUBLIC] is None and SCOPES[Perm.SIGNED_IN] is None
    # Every permission that changes something needs more than read.
    for perm, scope in SCOPES.items():
        if perm.value.endswith((".manage", ".send", ".reply", ".transfer", ".delete", ".export")):
            assert scope in (Scope.MANAGE, Scope.MESSAGES_SEND), perm


def _call(api, method, url):
    return getattr(api, method.lower())(url, {}, format="json") if method != "GET" else api.get(url)


def _insufficient(response):
    return response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


@pytest.mark.django_db(transaction=True)
def test_scope_matrix_every_endpoint_every_scope(named, settings):
    """An owner (every workspace permission) and a platform admin, each with one key per single scope: a key is
    refused with insufficient_scope, naming the scope, exactly when the table says its scope is not the one needed."""
    settings.WHATSAPP_PROVIDER = "simulator"
    keys = {}
    for scope in Scope:
        _, owner_raw = create_api_key(user=named.alice, tenant=named.acme, name=scope, scopes=[scope])
        _, admin_raw = create_api_key(user=named.admin, tenant=None, name=scope, scopes=[scope])
        keys[scope] = (key_client(owner_raw), key_client(admin_raw))
    wrong, checked = [], 0
    for path, method, view in _api_operations():
        perm = declared_permission(view, method)
        if perm == Perm.PUBLIC:
            continue
        needed = scope_needed(perm)
        url = _filled(path)
        for scope, (owner, admin) in keys.items():
            api = admin if perm == Perm.PLATFORM else owner
            response = _call(api, method, url)
            checked += 1
            assert response.status_code < 500, (method, path, scope, response.content[:300])
            expected = needed is not None and needed != scope
            if _insufficient(response) != expected:
                wrong.append((method, path, str(scope), str(perm), response.status_code))
            elif expected and response.json()["error"]["details"]["scope"] != needed:
                wrong.append((method, path, str(scope), "names", response.json()["error"]["details"]))
    assert checked > 180
    assert wrong == []


def test_a_key_never_does_more_than_its_users_role(named, api_as):
    """bob is an agent: a key with every scope still cannot manage (the role says no: permission_denied)."""
    _, raw = create_api_key(user=named.bob, tenant=named.acme, name="all", scopes=list(Scope))
    response = key_client(raw).post("/api/v1/invitations", {"email": "x@acme.test", "role": "viewer"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"


def test_a_read_key_reads_but_does_not_send_or_manage(named):
    _, raw = create_api_key(user=named.alice, tenant=named.acme, name="reader", scopes=["read"])
    api = key_client(raw)
    assert api.get("/api/v1/members").status_code == 200
    assert api.get("/api/v1/me").status_code == 200  # signed_in: any key
    response = api.post("/api/v1/invitations", {"email": "x@acme.test", "role": "viewer"}, format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope" and error["details"]["scope"] == "manage"
    assert "'manage'" in error["message"]
    # Revoking keys is manage too: a leaked read key cannot cut its user's other keys.
    other, _ = create_api_key(user=named.alice, tenant=named.acme, name="other")
    assert _insufficient(api.delete(f"/api/v1/api-keys/{other.pk}"))
    assert not ApiKey.objects.get(pk=other.pk).is_revoked


def test_keys_made_before_scopes_have_them_all(named, api_as):
    key, _ = create_api_key(user=named.alice, tenant=named.acme, name="old")
    assert key.scopes == ["messages:send", "read", "manage"]


def test_key_creation_validates_scopes_and_expiry(named, api_as):
    api = api_as(named.alice)
    for body, code in [({"name": "x", "scopes": []}, "validation_error"),
                       ({"name": "x", "scopes": ["write"]}, "validation_error"),
                       ({"name": "x", "scopes": "read"}, "validation_error"),
                       ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry"),
                       ({"name": "x", "expires_at": "tomorrow"}, "validation_error")]:
        response = api.post("/api/v1/api-keys", body, format="json")
        assert response.status_code == 400 and response.json()["error"]["code"] == code, (body, response.json())
    later = (timezone.now() + datetime.timedelta(days=30)).replace(microsecond=0)
    response = api.post("/api/v1/api-keys", {"name": "ci", "scopes": ["read", "read", "messages:send"],
                                             "expires_at": later.isoformat()}, format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["scopes"] == ["messages:send", "read"]
    key = ApiKey.objects.get(pk=data["id"])
    assert key.expires_at == later and key.scopes == ["messages:send", "read"]
    row = AuditLog.objects.get(action="api_key.created", target_id=str(key.pk))
    assert row.after["scopes"] == ["messages:send", "read"] and row.after["expires_at"] == later.isoformat()
    listed = {k["id"]: k for k in api.get("/api/v1/api-keys").json()["data"]}[key.pk]
    assert listed["status"] == "active" and listed["scopes"] == ["messages:send", "read"]


def test_an_expired_key_answers_401_with_its_own_code(named, travel):
    key, raw = create_api_key(user=named.alice, tenant=named.acme, name="short",
                              expires_at=timezone.now() + datetime.timedelta(hours=2))
    api = key_client(raw)
    assert api.get("/api/v1/me").status_code == 200
    travel(hours=2, seconds=1)
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"
    assert ApiKey.objects.get(pk=key.pk).status == "expired"
    assert not ApiKey.objects.active().filter(pk=key.pk).exists()


def test_rotation_keeps_the_old_key_working_until_the_overlap_ends(named, api_as, travel):
    manager = api_as(named.alice)
    key, old_raw = create_api_key(user=named.alice, tenant=named.acme, name="crm", scopes=["read", "messages:send"])
    response = manager.post(f"/api/v1/api-keys/{key.pk}/rotate", {"overlap_hours": 24}, format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    new_raw = data["key"]
    assert data["name"] == "crm" and data["scopes"] == ["messages:send", "read"] and new_raw != old_raw
    assert data["replaces"]["id"] == key.pk and data["replaces"]["prefix"] == key.prefix
    old, new = key_client(old_raw), key_client(new_raw)
    # Before the overlap ends: both work.
    travel(hours=23, minutes=59)
    assert old.get("/api/v1/members").status_code == 200
    assert new.get("/api/v1/members").status_code == 200
    key.refresh_from_db()
    assert key.status == "rotated" and key.replaced_by.prefix == data["prefix"]
    # After: only the new one.
    travel(minutes=2)
    response = old.get("/api/v1/members")
    assert response.status_code == 401 and response.json()["error"]["code"] == "api_key_expired"
    assert "rotated" in response.json()["error"]["message"]
    assert new.get("/api/v1/members").status_code == 200
    rotated = AuditLog.objects.get(action="api_key.rotated", target_id=str(key.pk))
    assert rotated.actor == named.alice and rotated.after["replaced_by"] == data["prefix"]
    assert rotated.after["overlap_hours"] == 24 and rotated.before["expires_at"] is None
    assert AuditLog.objects.get(action="api_key.created", target_id=str(data["id"])).after["rotated_from"] == key.prefix


def test_rotation_without_overlap_stops_the_old_key_at_once_and_keeps_an_earlier_expiry(named, api_as, travel):
    key, old_raw = create_api_key(user=named.alice, tenant=named.acme, name="crm")
    _, new_raw = rotate_api_key(key, acting_user=named.alice, overlap_hours=0)
    assert key_client(old_raw).get("/api/v1/me").json()["error"]["code"] == "api_key_expired"
    assert key_client(new_raw).get("/api/v1/me").status_code == 200
    # A key expiring within the overlap still expires then; the new key inherits the expiry.
    soon = timezone.now() + datetime.timedelta(hours=1)
    key, _ = create_api_key(user=named.alice, tenant=named.acme, name="soon", expires_at=soon)
    new_key, _ = rotate_api_key(key, acting_user=named.alice, overlap_hours=48)
    key.refresh_from_db()
    assert key.expires_at == soon and new_key.expires_at == soon


def test_rotation_refuses_keys_that_are_not_active_and_others_keys(named, api_as):
    api = api_as(named.alice)
    key, _ = create_api_key(user=named.alice, tenant=named.acme, name="crm")
    assert api.post(f"/api/v1/api-keys/{key.pk}/rotate", {"overlap_hours": 1}, format="json").status_code == 201
    response = api.post(f"/api/v1/api-keys/{key.pk}/rotate", {"overlap_hours": 1}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "api_key_not_active"
    assert response.json()["error"]["details"]["status"] == "rotated"
    for overlap in (-1, 169, "1", None):
        response = api.post(f"/api/v1/api-keys/{key.pk}/rotate", {"overlap_hours": overlap}, format="json")
        assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error", overlap
    carol_key, _ = create_api_key(user=named.carol, tenant=named.globex, name="theirs")
    assert api.post(f"/api/v1/api-keys/{carol_key.pk}/rotate", {}, format="json").status_code == 404
    assert ApiKey.objects.get(pk=carol_key.pk).replaced_by is None
    # An agent has no key management: rotating is refused by the role.
    bob_key, bob_raw = create_api_key(user=named.bob, tenant=named.acme, name="bob")
    response = key_client(bob_raw).post(f"/api/v1/api-keys/{bob_key.pk}/rotate", {}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"


def _shown_key(response):
    return re.search(r'value="(sb_[0-9a-f]{8}_[A-Za-z0-9_-]+)"', response.content.decode()).group(1)


def test_the_page_makes_scoped_expiring_keys(client, named):
    client.force_login(named.alice)
    page = client.get("/dashboard/api-keys/").content.decode()
    assert 'name="scopes" value="messages:send"' in page and 'name="expires_on"' in page
    response = client.post("/dashboard/api-keys/", {"name": "reader", "scopes": ["read"], "scopes_shown": "1",
                                                    "expires_on": "2099-03-01"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/api-keys/"
    raw = _shown_key(client.get("/dashboard/api-keys/"))
    key = ApiKey.objects.get(name="reader")
    assert key.scopes == ["read"] and raw.startswith(key.prefix)
    # The end of the chosen day in the workspace's time zone (Acme's is UTC).
    assert key.expires_at == datetime.datetime(2099, 3, 2, tzinfo=datetime.UTC)
    response = client.post("/dashboard/api-keys/", {"name": "none", "scopes_shown": "1"}, follow=True)
    assert b"at least one scope" in response.content and not ApiKey.objects.filter(name="none").exists()
    response = client.post("/dashboard/api-keys/", {"name": "past", "scopes": ["read"], "scopes_shown": "1",
                                                    "expires_on": "2001-01-01"}, follow=True)
    assert b"in the past" in response.content and not ApiKey.objects.filter(name="past").exists()
    client.post("/dashboard/api-keys/", {"name": "scripted"})  # no scope fieldset: every scope, like the API
    assert ApiKey.objects.get(name="scripted").scopes == ["messages:send", "read", "manage"]


def test_the_page_rotates_a_key_and_shows_the_new_one_once(client, named):
    key, old_raw = create_api_key(user=named.alice, tenant=named.acme, name="crm")
    client.force_login(named.alice)
    assert 'action="/dashboard/api-keys/%d/rotate"' % key.pk in client.get("/dashboard/api-keys/").content.decode()
    response = client.post(f"/dashboard/api-keys/{key.pk}/rotate", {"overlap_hours": "72"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/api-keys/"
    shown = client.get("/dashboard/api-keys/")
    new_raw = _shown_key(shown)
    assert new_raw != old_raw and b"rotated" in shown.content
    assert new_raw not in client.get("/dashboard/api-keys/").content.decode()  # once
    key.refresh_from_db()
    assert key.status == "rotated"
    assert datetime.timedelta(hours=71) < key.expires_at - timezone.now() <= datetime.timedelta(hours=72)
    assert key_client(old_raw).get("/api/v1/me").status_code == 200
    assert key_client(new_raw).get("/api/v1/me").status_code == 200
    # Someone else's key: 404; an agent: 403.
    carol_key, _ = create_api_key(user=named.carol, tenant=named.globex, name="theirs")
    assert client.post(f"/dashboard/api-keys/{carol_key.pk}/rotate", {"overlap_hours": "0"}).status_code == 404
    bob_key, _ = create_api_key(user=named.bob, tenant=named.acme, name="bob")
    client.force_login(named.bob)
    assert client.post(f"/dashboard/api-keys/{bob_key.pk}/rotate", {"overlap_hours": "0"}).status_code == 403
    assert ApiKey.objects.get(pk=bob_key.pk).replaced_by is None


def test_readme_shows_each_permissions_scope():
    from pathlib import Path

    from core.permissions import PERMISSIONS, Role

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text().replace("  ", " ")
    for perm, roles in PERMISSIONS.items():
        if perm in (Perm.PUBLIC, Perm.SIGNED_IN, Perm.PLATFORM):
            continue
        row = f"| `{perm}` | " + " | ".join("yes" if role in roles else "" for role in Role) + f" | `{SCOPES[perm]}` |"
        assert row.replace("  ", " ") in readme, row
