"""Deleting a workspace: an owner schedules it (password and the typed name), the workspace turns read-only and its
sessions are stopped and unlinked, an owner may cancel within WORKSPACE_DELETE_GRACE_DAYS, and after that the beat
task drops the schema and the public rows, cancels a Stripe subscription and removes the files. The clock is moved by
passing `now`, as billing's tests do."""
import os
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_exists, tenant_context

from accounts import deletion
from accounts.models import ApiKey, Invitation, Membership
from audit.models import AuditLog
from billing.models import Customer, Subscription
from billing.tests.stripe_fake import stripe_api  # noqa: F401  (fixture)
from conftest import PASSWORD, make_active_tenant, make_user
from tenants.models import Domain, Tenant
from whatsapp.sessions.models import WhatsAppSession


def _as_if_committed():
    """The test's one transaction holds deferred foreign-key checks of the rows it wrote, and Postgres refuses to
    drop a table with pending ones; in production the deletion runs in a transaction of its own. Check them now."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _linked_session(tenant, name="front"):
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, status=WhatsAppSession.Status.CONNECTED, should_run=True,
                                              jid_user="14155550123", phone="+14155550123")


def test_an_owner_schedules_the_deletion_and_the_workspace_turns_read_only(
        named, api_as, mailoutbox, django_capture_on_commit_callbacks, settings):
    settings.WORKSPACE_DELETE_GRACE_DAYS = 7
    session = _linked_session(named.acme)
    alice, bob = api_as(named.alice), api_as(named.bob)
    assert alice.get("/api/v1/workspace/deletion").json()["data"] == {
        "scheduled": False, "requested_at": None, "deletes_at": None}
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post("/api/v1/workspace/deletion", {"password": PASSWORD, "name": "Acme"}, format="json")
    assert response.status_code == 202, response.json()
    data = response.json()["data"]
    assert data["scheduled"] is True
    tenant = Tenant.objects.get(pk=named.acme.pk)
    assert before + timedelta(days=7) <= tenant.deletion_due_at <= timezone.now() + timedelta(days=7)
    row = AuditLog.objects.get(action="tenant.deletion_scheduled")
    assert (row.actor, row.tenant_id, row.after["grace_days"]) == (named.alice, named.acme.pk, 7)
    # The sessions stopped and unlinked at once, audited as the owner's doing.
    with tenant_context(named.acme):
        session.refresh_from_db()
    assert (session.should_run, session.jid_user, session.status) == (False, "", WhatsAppSession.Status.LOGGED_OUT)
    assert AuditLog.objects.filter(action="whatsapp.session_logged_out", actor=named.alice).exists()
    # The owner was told, with the date, the cancel page and the export.
    [mail] = [mail for mail in mailoutbox if "will be deleted" in mail.subject]
    assert mail.to == ["alice@acme.test"] and "/dashboard/settings/" in mail.body and "/data-export/" in mail.body
    # Read-only for everyone: changes answer 409 with the date; reading still works.
    response = alice.patch("/api/v1/workspace", {"timezone": "Asia/Jakarta"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "workspace_deletion_scheduled"
    assert response.json()["error"]["details"]["deletes_at"] == tenant.deletion_due_at.isoformat()
    assert alice.post("/api/v1/sessions", {"name": "new"}, format="json").json()["error"]["code"] == \
        "workspace_deletion_scheduled"
    assert bob.get("/api/v1/workspace").status_code == 200
    # Asking again is a conflict; an agent may not cancel; the owner may.
    response = alice.post("/api/v1/workspace/deletion", {"password": PASSWORD, "name": "Acme"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "workspace_deletion_scheduled"
    response = bob.delete("/api/v1/workspace/deletion")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    response = alice.delete("/api/v1/workspace/deletion")
    assert response.status_code == 200 and response.json()["data"]["scheduled"] is False
    assert Tenant.objects.get(pk=named.acme.pk).deletion_due_at is None
    assert AuditLog.objects.filter(action="tenant.deletion_cancelled", actor=named.alice).count() == 1
    assert alice.patch("/api/v1/workspace", {"timezone": "Asia/Jakarta"}, format="json").status_code == 200
    response = alice.delete("/api/v1/workspace/deletion")
    assert response.status_code == 409 and response.json()["error"]["code"] == "workspace_deletion_not_scheduled"
    # Globex never noticed.
    assert Tenant.objects.get(pk=named.globex.pk).deletion_due_at is None


@pytest.mark.parametrize("who, body, status, code", [
    ("alice", {"password": "wrong", "name": "Acme"}, 400, "wrong_password"),
    ("alice", {"password": PASSWORD, "name": "acme"}, 400, "wrong_name"),
    ("alice", {"password": PASSWORD, "name": "Globex"}, 400, "wrong_name"),
    ("alice", {"password": PASSWORD}, 400, "validation_error"),
    ("alice", {"name": "Acme"}, 400, "validation_error"),
    ("alice", {"password": PASSWORD, "name": "Acme", "now": "x"}, 400, "validation_error"),
    ("bob", {"password": PASSWORD, "name": "Acme"}, 403, "permission_denied"),
])
def test_bad_requests_change_nothing(named, api_as, who, body, status, code):
    session = _linked_session(named.acme)
    response = api_as(getattr(named, who)).post("/api/v1/workspace/deletion", body, format="json")
    assert response.status_code == status and response.json()["error"]["code"] == code, response.json()
    assert Tenant.objects.get(pk=named.acme.pk).deletion_due_at is None
    assert not AuditLog.objects.filter(action__startswith="tenant.deletion").exists()
    with tenant_context(named.acme):
        session.refresh_from_db()
    assert session.is_linked and session.should_run


def test_a_read_only_key_may_not_schedule_it(named):
    from accounts.actions import create_api_key
    from accounts.tests.test_api_key_scopes import key_client

    _, raw = create_api_key(user=named.alice, tenant=named.acme, name="r", scopes=["read"])
    response = key_client(raw).post("/api/v1/workspace/deletion", {"password": PASSWORD, "name": "Acme"},
                                    format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


@pytest.fixture
def doomed(named, tenant_schemas, settings, tmp_path):
    """A third workspace on a migrated schema of its own (the session's pool schema: the test's transaction rolls the
    DROP SCHEMA back), with an owner, an agent, a key, an invitation, a Stripe subscription, data and files."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.WHATSAPP_STORE_DIR = str(tmp_path / "store")
    os.makedirs(settings.WHATSAPP_STORE_DIR)
    tenant = make_active_tenant("Doomed Ltd", "doomed", tenant_schemas["pool"], named.acme.plan)
    dora, dan = make_user("dora@doomed.test"), make_user("dan@doomed.test")
    Membership.objects.create(user=dora, tenant=tenant, role=Membership.Role.OWNER)
    Membership.objects.create(user=dan, tenant=tenant, role=Membership.Role.AGENT)
    from accounts.actions import create_api_key

    create_api_key(user=dora, tenant=tenant, name="integration")
    Invitation.objects.create(tenant=tenant, email="new@doomed.test", role="agent", token_hash="x" * 64,
                              expires_at=timezone.now() + timedelta(days=7))
    Customer.objects.filter(tenant=tenant).update(stripe_customer_id="cus_doomed")
    Subscription.objects.filter(tenant=tenant).update(stripe_subscription_id="sub_doomed",
                                                      status=Subscription.Status.ACTIVE)
    from whatsapp.providers.simulator import store_path

    session = _linked_session(tenant)
    store_file = store_path(settings.WHATSAPP_STORE_DIR, f"{tenant.schema_name}:{session.pk}")
    os.makedirs(os.path.dirname(store_file), exist_ok=True)
    with open(store_file, "w") as f:
        f.write("device keys")
    media_file = os.path.join(settings.MEDIA_ROOT, tenant.schema_name, "whatsapp", "2026", "12", "photo.jpg")
    os.makedirs(os.path.dirname(media_file))
    with open(media_file, "wb") as f:
        f.write(b"\xff\xd8 a photo")
    # Globex keeps a file of its own next to it.
    globex_file = os.path.join(settings.MEDIA_ROOT, named.globex.schema_name, "whatsapp", "keep.jpg")
    os.makedirs(os.path.dirname(globex_file))
    with open(globex_file, "wb") as f:
        f.write(b"globex's")
    tenant.files = {"store": store_file, "media": media_file, "globex": globex_file}
    tenant.owner = dora
    return tenant


def test_after_the_grace_the_schema_and_public_rows_are_gone_and_the_other_tenants_untouched(
        doomed, named, stripe_api, mailoutbox, django_capture_on_commit_callbacks, settings):
    settings.WORKSPACE_DELETE_GRACE_DAYS = 7
    _linked_session(named.globex, "globex-desk")
    schema, start = doomed.schema_name, timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        deletion.schedule_workspace_deletion(doomed, acting_user=doomed.owner, password=PASSWORD, name="Doomed Ltd",
                                             now=start)
    # Within the grace period nothing goes.
    with django_capture_on_commit_callbacks(execute=True):
        assert deletion.delete_due_workspaces(now=start + timedelta(days=6, hours=23)) == 0
    assert schema_exists(schema) and Tenant.objects.filter(pk=doomed.pk).exists()
    assert stripe_api.requests_to("/v1/subscriptions/sub_doomed") == []
    # After it, the beat task deletes it all.
    _as_if_committed()
    with django_capture_on_commit_callbacks(execute=True):
        assert deletion.delete_due_workspaces(now=start + timedelta(days=7, seconds=1)) == 1
    connection.set_schema_to_public()
    assert not schema_exists(schema)
    assert not Tenant.objects.filter(pk=doomed.pk).exists()
    for model in (Membership, ApiKey, Invitation, Domain, Customer, Subscription):
        assert not model.objects.filter(tenant_id=doomed.pk).exists(), model
    assert not os.path.exists(doomed.files["store"]) and not os.path.exists(doomed.files["media"])
    [cancel] = stripe_api.requests_to("/v1/subscriptions/sub_doomed")
    assert cancel.method == "DELETE"
    # Audited (the rows outlive the tenant, without it), the owner told.
    deleted = AuditLog.objects.get(action="tenant.deleted", target_id=str(doomed.pk))
    assert deleted.tenant_id is None and deleted.before["schema"] == schema
    assert deleted.after == {"reason": "deletion requested by an owner"}
    assert AuditLog.objects.filter(action="billing.canceled", after__stripe_subscription="sub_doomed").exists()
    assert [mail.to for mail in mailoutbox if mail.subject.endswith("Doomed Ltd was deleted")] == [["dora@doomed.test"]]
    # The users remain (they may belong elsewhere); every other workspace is untouched, schema, rows and files.
    assert Tenant.objects.filter(pk__in=[named.acme.pk, named.globex.pk]).count() == 2
    assert schema_exists(named.globex.schema_name) and schema_exists(named.acme.schema_name)
    with tenant_context(named.globex):
        assert WhatsAppSession.objects.get(name="globex-desk").is_linked
    assert Membership.objects.filter(tenant=named.globex).count() == 1
    assert os.path.exists(doomed.files["globex"])
    # Running again finds nothing to do.
    assert deletion.delete_due_workspaces(now=start + timedelta(days=8)) == 0


def test_stripe_unreachable_postpones_the_deletion(doomed, stripe_api, django_capture_on_commit_callbacks):
    start = timezone.now()
    deletion.schedule_workspace_deletion(doomed, acting_user=doomed.owner, password=PASSWORD, name="Doomed Ltd",
                                         now=start)
    stripe_api.fail_with = 500
    assert deletion.delete_due_workspaces(now=start + timedelta(days=8)) == 0
    assert schema_exists(doomed.schema_name) and Tenant.objects.filter(pk=doomed.pk).exists()
    stripe_api.fail_with = None
    _as_if_committed()
    with django_capture_on_commit_callbacks(execute=True):
        assert deletion.delete_due_workspaces(now=start + timedelta(days=8)) == 1
    connection.set_schema_to_public()
    assert not schema_exists(doomed.schema_name)


def test_a_cancelled_deletion_is_not_carried_out(doomed):
    start = timezone.now()
    deletion.schedule_workspace_deletion(doomed, acting_user=doomed.owner, password=PASSWORD, name="Doomed Ltd",
                                         now=start)
    deletion.cancel_workspace_deletion(doomed, acting_user=doomed.owner)
    assert deletion.delete_due_workspaces(now=start + timedelta(days=30)) == 0
    assert schema_exists(doomed.schema_name)


def test_the_settings_page_offers_the_export_then_schedules_and_cancels(named, client, mailoutbox):
    client.force_login(named.alice)
    page = client.get("/dashboard/settings/")
    assert b'data-testid="export-before-delete"' in page.content and b'href="/data-export/"' in page.content
    response = client.post("/dashboard/settings/delete", {"password": "nope", "name": "Acme"})
    assert response.status_code == 400 and b"That is not your password" in response.content
    response = client.post("/dashboard/settings/delete", {"password": PASSWORD, "name": "Acme Inc"})
    assert response.status_code == 400 and b"Type the workspace" in response.content
    assert Tenant.objects.get(pk=named.acme.pk).deletion_due_at is None
    response = client.post("/dashboard/settings/delete", {"password": PASSWORD, "name": "Acme"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/settings/"
    due = Tenant.objects.get(pk=named.acme.pk).deletion_due_at
    assert due is not None
    # Every page shows the banner with the date; the owner gets a Cancel button, an agent does not.
    page = client.get("/dashboard/")
    assert b'data-testid="deletion-banner"' in page.content and b'data-testid="banner-cancel-deletion"' in page.content
    assert due.strftime("%-d %b %Y").encode() in page.content
    bob = client.__class__()
    bob.force_login(named.bob)
    page = bob.get("/dashboard/")
    assert b'data-testid="deletion-banner"' in page.content and b"banner-cancel-deletion" not in page.content
    assert bob.post("/dashboard/settings/delete/cancel").status_code == 403
    # Changes on the pages are refused while it waits.
    response = client.post("/dashboard/settings/", {"name": "Renamed", "timezone": "UTC", "locale": "en"})
    assert response.status_code == 302 and Tenant.objects.get(pk=named.acme.pk).name == "Acme"
    response = client.post("/dashboard/settings/delete/cancel")
    assert response.status_code == 302
    assert Tenant.objects.get(pk=named.acme.pk).deletion_due_at is None
    assert b'data-testid="deletion-banner"' not in client.get("/dashboard/").content


def test_only_owners_see_the_delete_section(named, client):
    client.force_login(named.bob)
    assert client.get("/dashboard/settings/").status_code == 403  # the settings page is for managers
    named.bob.memberships.update(role=Membership.Role.ADMIN)
    page = client.get("/dashboard/settings/")
    assert page.status_code == 200 and b'data-testid="delete-workspace"' not in page.content
    assert client.post("/dashboard/settings/delete", {"password": PASSWORD, "name": "Acme"}).status_code == 403
