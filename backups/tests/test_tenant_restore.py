"""Round trips on real Postgres: a tenant with messages, contacts, media and a linked simulator session is backed up
(verified by a restore into a scratch schema), damaged (rows deleted, a table dropped, media and the device store
lost), restored in place, and equals the original: rows, media bytes, and the session reconnects without a scan.
Restoring as a new tenant gives a copy with its own schema; the other tenant is untouched throughout."""
import base64
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from backups import actions, restoring
from backups.models import Backup, Restore, Status
from tenants.models import Tenant
from whatsapp.models import BlockedNumber, Contact, Message, WhatsAppSession
from whatsapp.messaging.tests.test_message_types import png_bytes
from whatsapp.tests.support import drain, link_session, ok, settle

PNG = png_bytes("blue", size=(64, 64))
pytestmark = pytest.mark.django_db(transaction=True)


def inbound(client, **body):
    return client.post("/api/v1/test-helpers/sessions/front-desk/inbound", {"from": "+6281234567890", **body},
                       format="json")


def tenant_state(tenant):
    with tenant_context(tenant):
        state = {
            "messages": sorted(Message.objects.values_list("pk", "text", "media_file")),
            "contacts": sorted(Contact.objects.values_list("pk", "phone")),
            "sessions": sorted(WhatsAppSession.objects.values_list("pk", "name", "phone", "jid_user")),
            "blocked": sorted(BlockedNumber.objects.values_list("pk", "phone")),
        }
    connection.set_schema_to_public()
    return state


def files_under(root):
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def device_stores(root, schema="t_test_acme"):
    """The tenant's sessions' device keys (what a tenant backup holds of the store folder; the simulated WhatsApp
    keeps its own world beside them: not the tenant's data)."""
    return {name: data for name, data in files_under(root).items() if name.startswith(schema)}


def make_tenant_with_data(clients, host, clock, named, settings):
    alice = clients["alice"]
    link_session(alice, host, clock)
    ok(inbound(alice, text="hello from a customer"), 202)
    ok(inbound(alice, type="image", media=base64.b64encode(PNG).decode(), mimetype="image/png", caption="look"), 202)
    ok(inbound(alice, text="second message", **{"from": "+6281234567891"}), 202)
    drain(host)
    with tenant_context(named.globex):
        BlockedNumber.objects.create(phone="+4915112345678", reason="Globex's own")
    connection.set_schema_to_public()


def test_a_damaged_tenant_comes_back_as_it_was(named, clients, host, clock, settings, drop_restored_schemas):
    make_tenant_with_data(clients, host, clock, named, settings)
    before, globex_before = tenant_state(named.acme), tenant_state(named.globex)
    media_before = files_under(Path(settings.MEDIA_ROOT) / "t_test_acme")
    stores_before = device_stores(settings.WHATSAPP_STORE_DIR)
    assert len(before["messages"]) == 3 and media_before and stores_before

    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin)
    backup.refresh_from_db()
    assert backup.status == Status.SUCCEEDED, backup.error
    assert backup.verified_at is not None, backup.verification_error
    assert backup.manifest["database"]["schemas"]["t_test_acme"]["tables"]["whatsapp_message"] == 3
    assert backup.manifest["files"]["media"]["count"] == len(media_before)
    stored = Path(settings.BACKUP_DIR) / backup.storage_name
    assert stored.exists() and oct(stored.stat().st_mode & 0o777) == "0o600"
    assert PNG not in stored.read_bytes() and b"hello from a customer" not in stored.read_bytes()  # encrypted

    # Damage: rows deleted, a table dropped, the media and the device's keys lost.
    with tenant_context(named.acme), connection.cursor() as cursor:
        Message.objects.filter(text="second message").delete()
        cursor.execute("DROP TABLE whatsapp_blockednumber CASCADE")
    connection.set_schema_to_public()
    for path in Path(settings.MEDIA_ROOT, "t_test_acme").rglob("*"):
        if path.is_file():
            path.unlink()
    for name in stores_before:
        Path(settings.WHATSAPP_STORE_DIR, name).write_bytes(b"garbage")

    restore = actions.request_restore(backup, acting_user=named.admin)
    restore.refresh_from_db()
    assert restore.status == Status.SUCCEEDED, restore.error
    assert restore.previous_schema.startswith("t_test_acme_pre_")
    settle(host, clock)
    settle(host, clock)

    assert tenant_state(named.acme) == before
    assert files_under(Path(settings.MEDIA_ROOT) / "t_test_acme") == media_before
    assert device_stores(settings.WHATSAPP_STORE_DIR) == stores_before
    with tenant_context(named.acme), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM whatsapp_blockednumber")  # the dropped table is back
        session = WhatsAppSession.objects.get(name="front-desk")
    connection.set_schema_to_public()
    # Reconnected from the restored device keys: no QR code was shown, the same number is linked.
    assert (session.status, session.should_run, session.qr_code) == ("connected", True, "")
    assert restore.details["sessions_started"] == [session.pk]
    assert tenant_state(named.globex) == globex_before
    assert Restore.objects.get(pk=restore.pk).tenant_id == named.acme.pk

    # The replaced schema and files stay for BACKUP_RESTORE_GRACE_DAYS, then go.
    assert restoring.drop_expired_previous_schemas(timezone.now() + timedelta(days=6)) == []
    assert restoring.drop_expired_previous_schemas(timezone.now() + timedelta(days=8)) == [restore.previous_schema]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [restore.previous_schema])
        assert cursor.fetchone() is None
    assert not Path(settings.WHATSAPP_STORE_DIR, ".pre").joinpath(restore.previous_schema).exists()
    assert not Path(settings.MEDIA_ROOT, restore.previous_schema).exists()


def test_restore_as_a_new_tenant_leaves_the_original_alone(named, clients, host, clock, settings,
                                                          drop_restored_schemas):
    make_tenant_with_data(clients, host, clock, named, settings)
    before, globex_before = tenant_state(named.acme), tenant_state(named.globex)
    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin, verify=False)

    restore = actions.request_restore(Backup.objects.get(pk=backup.pk), acting_user=named.admin, as_new_tenant=True)
    restore.refresh_from_db()
    assert restore.status == Status.SUCCEEDED, restore.error
    copy = Tenant.objects.get(pk=restore.details["new_tenant_id"])
    assert copy.schema_name != "t_test_acme" and copy.slug.startswith("acme-r") and copy.is_active
    copied = tenant_state(copy)
    assert copied["messages"] == before["messages"] and copied["contacts"] == before["contacts"]
    with tenant_context(copy):
        assert not WhatsAppSession.objects.filter(should_run=True).exists()  # never two clients on one device
    connection.set_schema_to_public()
    assert set(copy.memberships.values_list("user__email", "role")) == {("alice@acme.test", "owner"),
                                                                          ("bob@acme.test", "agent")}
    assert not copy.api_keys.exists()
    assert files_under(Path(settings.MEDIA_ROOT) / copy.schema_name) == files_under(
        Path(settings.MEDIA_ROOT) / "t_test_acme")
    assert tenant_state(named.acme) == before and tenant_state(named.globex) == globex_before
    stores = os.listdir(settings.WHATSAPP_STORE_DIR)
    assert any(name.startswith(copy.schema_name) for name in stores)  # the keys under the copy's own key


@pytest.fixture
def acme_schema_kept(tenant_schemas, django_db_blocker):
    """A test that deletes Acme (its schema dropped) must leave the session's schema behind, whatever happens."""
    yield
    from django_tenants.utils import schema_exists

    from tenants.pool import create_and_migrate_schema

    with django_db_blocker.unblock():
        if not schema_exists(tenant_schemas["acme"]):
            create_and_migrate_schema(tenant_schemas["acme"])
        connection.set_schema_to_public()


def test_a_deleted_tenant_comes_back_with_its_public_rows(named, clients, acme_schema_kept, drop_restored_schemas):
    from accounts.actions import create_api_key
    from billing.models import Subscription
    from tenants.actions import delete_tenant

    key, raw = create_api_key(user=named.alice, tenant=named.acme, name="shop")
    with tenant_context(named.acme):
        BlockedNumber.objects.create(phone="+14155550999", reason="kept")
    connection.set_schema_to_public()
    backup = actions.start_backup(kind="tenant", tenant=named.acme, acting_user=named.admin, verify=False)
    delete_tenant(named.acme, acting_user=named.admin)
    assert not Tenant.objects.filter(pk=named.acme.pk).exists()

    restore = actions.request_restore(Backup.objects.get(pk=backup.pk), acting_user=named.admin)
    restore.refresh_from_db()
    assert restore.status == Status.SUCCEEDED, restore.error
    assert restore.details["recreated"] is True and restore.previous_schema == ""
    tenant = Tenant.objects.get(pk=named.acme.pk)
    assert (tenant.schema_name, tenant.slug, tenant.status) == ("t_test_acme", "acme", "active")
    assert set(tenant.memberships.values_list("user__email", "role")) == {("alice@acme.test", "owner"),
                                                                            ("bob@acme.test", "agent")}
    assert Subscription.objects.filter(tenant=tenant).exists()
    assert tenant.api_keys.get(name="shop").key_hash == key.key_hash
    with tenant_context(tenant):
        assert list(BlockedNumber.objects.values_list("phone", flat=True)) == ["+14155550999"]
    connection.set_schema_to_public()
    response = clients["alice"].get("/api/v1/me")  # the key made before the backup works again
    assert response.status_code == 200, response.content
