"""Platform admin API over tenants, including non-admin and cross-tenant access."""
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.actions import register_business
from audit.models import AuditLog
from conftest import make_user
from tenants.models import Tenant


def error(response):
    body = response.json()
    assert body["success"] is False
    return body["error"]["code"]


@pytest.fixture
def admin_api(named, api_as):
    return api_as(named.admin)


@pytest.fixture
def pending(plans):
    owner = make_user("dewi@kopi.test", full_name="Dewi Owner")
    return register_business(user=owner, business_name="Kopi Kenangan", plan=plans["free"], phone="+6281234567890")


def test_list_paginates_and_filters_by_status(admin_api, named, pending):
    response = admin_api.get("/api/v1/tenants", {"limit": 2, "page": 1})
    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    assert body["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}
    assert len(body["data"]) == 2
    response = admin_api.get("/api/v1/tenants", {"status": "pending"})
    assert [t["slug"] for t in response.json()["data"]] == ["kopi-kenangan"]
    response = admin_api.get("/api/v1/tenants", {"status": "sleeping"})
    assert response.status_code == 400 and error(response) == "invalid_status"


def test_pooled_schemas_are_never_listed_or_addressable(admin_api, named, pooled_schema):
    pooled = Tenant.objects.get(status="pooled")
    slugs = [t["slug"] for t in admin_api.get("/api/v1/tenants").json()["data"]]
    assert "pooled-test" not in slugs
    assert admin_api.get(f"/api/v1/tenants/{pooled.pk}").status_code == 404


@pytest.mark.parametrize("who", ["alice", "bob", "carol"])
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/tenants"),
        ("post", "/api/v1/tenants"),
        ("get", "/api/v1/tenants/{acme}"),
        ("patch", "/api/v1/tenants/{globex}"),
        ("delete", "/api/v1/tenants/{globex}"),
        ("get", "/api/v1/tenants/{globex}/stats"),
        ("get", "/api/v1/tenants/{acme}/settings"),
        ("patch", "/api/v1/tenants/{globex}/settings"),
        ("post", "/api/v1/tenants/{globex}/suspend"),
        ("post", "/api/v1/tenants/{acme}/reactivate"),
        ("post", "/api/v1/tenants/{acme}/approve"),
        ("post", "/api/v1/tenants/{acme}/reject"),
    ],
)
def test_tenant_users_get_403_on_platform_endpoints(named, api_as, who, method, path):
    client = api_as(getattr(named, who))
    url = path.format(acme=named.acme.pk, globex=named.globex.pk)
    response = getattr(client, method)(url, {}, format="json")
    assert response.status_code == 403 and error(response) == "permission_denied"
    assert not AuditLog.objects.exclude(action="api_key.created").exists()


def test_anonymous_gets_401(client, named):
    response = client.get("/api/v1/tenants")
    assert response.status_code == 401 and error(response) == "not_authenticated"


def test_unknown_tenant_is_404_everywhere(admin_api):
    for suffix in ("", "/stats", "/settings"):
        response = admin_api.get(f"/api/v1/tenants/999999{suffix}")
        assert response.status_code == 404 and error(response) == "not_found"
    assert admin_api.post("/api/v1/tenants/999999/approve").status_code == 404


def test_detail_patch_and_stats(admin_api, named, plans):
    response = admin_api.get(f"/api/v1/tenants/{named.acme.pk}")
    assert response.json()["data"]["slug"] == "acme"
    response = admin_api.patch(f"/api/v1/tenants/{named.acme.pk}", {"name": "Acme Corp", "plan": "pro"}, format="json")
    data = response.json()["data"]
    assert data["name"] == "Acme Corp" and data["plan"]["code"] == "pro"
    log = AuditLog.objects.get(action="tenant.updated")
    assert log.before["plan"] == "basic" and log.after["plan"] == "pro"
    response = admin_api.patch(f"/api/v1/tenants/{named.acme.pk}", {"plan": "platinum"}, format="json")
    assert response.status_code == 400 and error(response) == "validation_error"
    stats = admin_api.get(f"/api/v1/tenants/{named.acme.pk}/stats").json()["data"]
    assert stats["members"] == 2 and stats["api_keys_active"] == 0 and stats["schema_bytes"] > 0
    assert stats["limits"]["max_sessions"] == 20


def test_a_plan_or_trial_set_on_the_tenant_is_the_subscriptions_too(admin_api, named, plans):
    """One truth for limits and the billing clock, whichever endpoint changed it."""
    from billing import entitlements
    from billing.models import Subscription
    from tenants.models import Tenant

    url = f"/api/v1/tenants/{named.acme.pk}"
    assert admin_api.patch(url, {"plan": "pro"}, format="json").status_code == 200
    acme = Tenant.objects.get(pk=named.acme.pk)
    assert Subscription.objects.get(tenant=acme).plan.code == "pro" and entitlements.plan_of(acme).code == "pro"
    assert entitlements.limits_for(acme)["max_sessions"] == plans["pro"].max_sessions

    later = timezone.now() + timedelta(days=30)
    assert admin_api.patch(url, {"trial_ends_at": later.isoformat()}, format="json").status_code == 200
    assert Subscription.objects.get(tenant=acme).trial_ends_at == later
    assert AuditLog.objects.filter(action="billing.trial_end_set", tenant=acme).count() == 1

    # A paid subscription has no trial to move: refused, and nothing of the request is kept.
    Subscription.objects.filter(tenant=acme).update(status="active", current_period_end=later)
    response = admin_api.patch(url, {"name": "Renamed", "trial_ends_at": later.isoformat()}, format="json")
    assert response.status_code == 409 and error(response) == "not_on_trial"
    assert Tenant.objects.get(pk=acme.pk).name != "Renamed"


def test_settings_get_and_patch_with_validation(admin_api, named):
    url = f"/api/v1/tenants/{named.acme.pk}/settings"
    assert admin_api.get(url).json()["data"] == {"webhook_url": "", "timezone": "UTC"}
    response = admin_api.patch(url, {"timezone": "Mars/Olympus"}, format="json")
    assert response.status_code == 400 and error(response) == "validation_error"
    assert "IANA" in response.json()["error"]["message"]
    response = admin_api.patch(url, {"webhook_url": "not a url"}, format="json")
    assert response.status_code == 400
    response = admin_api.patch(url, {"timezone": "Asia/Jakarta", "webhook_url": "https://hooks.acme.test/wa"},
                               format="json")
    assert response.json()["data"] == {"webhook_url": "https://hooks.acme.test/wa", "timezone": "Asia/Jakarta"}
    named.acme.refresh_from_db()
    assert named.acme.timezone == "Asia/Jakarta"
    assert AuditLog.objects.filter(action="tenant.settings_updated", tenant=named.acme).count() == 1


def test_approve_reject_suspend_reactivate_state_machine(admin_api, named, pending, pooled_schema, monkeypatch):
    monkeypatch.setattr("tenants.tasks.refill_tenant_pool.delay", lambda: None)
    # The schema asks for a reason with something in it, white space of its regex dialect (U+FEFF) and of Python's
    # (U+001D, which str.strip() removes) alike.
    for body in ({"reason": " "}, {"reason": "\u001d"}, {"reason": "\ufeff "}, {}):
        response = admin_api.post(f"/api/v1/tenants/{pending.pk}/reject", body, format="json")
        assert response.status_code == 400 and error(response) == "validation_error"
    response = admin_api.post(f"/api/v1/tenants/{pending.pk}/approve", {"plan": "pro"}, format="json")
    data = response.json()["data"]
    assert response.status_code == 200 and data["status"] == "active" and data["plan"]["code"] == "pro"
    assert data["trial_days_left"] == 7

    for verb, body in (("approve", {}), ("reject", {"reason": "x"}), ("reactivate", {})):
        response = admin_api.post(f"/api/v1/tenants/{pending.pk}/{verb}", body, format="json")
        assert response.status_code == 409 and error(response) == "invalid_tenant_state"
        assert response.json()["error"]["details"] == {"status": "active"}

    response = admin_api.post(f"/api/v1/tenants/{pending.pk}/suspend", {"reason": "abuse report"}, format="json")
    assert response.json()["data"]["status"] == "suspended"
    assert response.json()["data"]["suspension_reason"] == "abuse report"
    response = admin_api.post(f"/api/v1/tenants/{pending.pk}/reactivate", format="json")
    assert response.json()["data"]["status"] == "active"
    actions = list(AuditLog.objects.filter(tenant=pending).order_by("id").values_list("action", flat=True))
    assert actions == ["tenant.registered", "tenant.approved", "tenant.suspended", "tenant.reactivated"]


def test_reject_a_pending_signup(admin_api, pending):
    response = admin_api.post(f"/api/v1/tenants/{pending.pk}/reject", {"reason": "Incomplete details"}, format="json")
    data = response.json()["data"]
    assert data["status"] == "rejected" and data["rejection_reason"] == "Incomplete details"


def test_create_tenant_invites_a_new_owner(admin_api, named, pooled_schema, monkeypatch, django_capture_on_commit_callbacks):
    from django.core import mail

    monkeypatch.setattr("tenants.tasks.refill_tenant_pool.delay", lambda: None)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post("/api/v1/tenants", {"name": "Warung Budi", "plan": "basic",
                                                       "owner_email": "budi@warung.test"}, format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["status"] == "active" and data["slug"] == "warung-budi"
    tenant = Tenant.objects.get(pk=data["id"])
    owner = tenant.memberships.get(role="owner").user
    assert owner.email == "budi@warung.test" and not owner.has_usable_password()
    assert any("budi@warung.test" in m.to for m in mail.outbox)


def test_create_tenant_bad_input(admin_api, named):
    response = admin_api.post("/api/v1/tenants", {"name": "Acme", "plan": "basic", "owner_email": "x@y.test",
                                                   "slug": "acme"}, format="json")
    assert response.status_code == 409 and error(response) == "slug_taken"
    response = admin_api.post("/api/v1/tenants", {"name": "X", "plan": "basic"}, format="json")
    assert response.status_code == 400 and error(response) == "validation_error"
    assert "owner_email" in response.json()["error"]["message"]
    assert Tenant.objects.count() == 2
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(email="x@y.test").exists()


def test_delete_tenant_drops_schema_and_keeps_audit(admin_api, named, pending):
    response = admin_api.delete(f"/api/v1/tenants/{pending.pk}")
    assert response.status_code == 204
    assert not Tenant.objects.filter(pk=pending.pk).exists()
    log = AuditLog.objects.get(action="tenant.deleted")
    assert log.before["slug"] == "kopi-kenangan" and log.tenant is None


def test_malformed_json_is_a_400_not_a_500(admin_api, named):
    response = admin_api.generic("PATCH", f"/api/v1/tenants/{named.acme.pk}", "{not json",
                                 content_type="application/json")
    assert response.status_code == 400 and error(response) == "invalid_request"
