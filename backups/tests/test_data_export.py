"""A tenant owner's Export my data: a zip of JSON records (webhook secrets left out) and media, built with progress,
emailed as a link that works only for the tenant's owner and only for a day; a few a day. Live progress reaches the
owner's socket and the platform admin's; nobody else's."""
import base64
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from django_tenants.utils import tenant_context

from backups import actions, exports
from backups.models import DataExport, Status
from whatsapp.messaging.tests.test_message_types import png_bytes
from whatsapp.models import WebhookEndpoint
from whatsapp.tests.socket_support import open_socket
from whatsapp.tests.support import drain, link_session, ok

pytestmark = pytest.mark.django_db(transaction=True)
PNG = png_bytes("red", size=(16, 16))


def test_the_owner_exports_the_workspace(named, clients, host, clock, settings, as_user):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    alice = clients["alice"]
    link_session(alice, host, clock)
    ok(alice.post("/api/v1/test-helpers/sessions/front-desk/inbound",
                  {"from": "+6281234567890", "type": "image", "media": base64.b64encode(PNG).decode(),
                   "mimetype": "image/png", "caption": "look"}, format="json"), 202)
    drain(host)
    ok(alice.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["message.received"]},
                  format="json"), 201)

    page = as_user(named.alice)
    assert "Export my data" in page.get("/dashboard/").content.decode()
    response = page.post("/data-export/")
    assert response.status_code == 302 and response.url == "/data-export/"
    export = DataExport.objects.get(tenant=named.acme)
    assert export.status == Status.SUCCEEDED and export.progress == 100, export.error
    [email] = [m for m in mail.outbox if "export is ready" in m.subject]
    assert email.to == ["alice@acme.test"]
    link = next(line for line in email.body.splitlines() if "/data-export/" in line)
    path = link.replace(settings.SITE_URL, "")

    download = page.get(path)
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    names = set(archive.namelist())
    assert {"workspace.json", "whatsapp/message.json", "whatsapp/contact.json", "whatsapp/webhookendpoint.json",
            "whatsapp/whatsappsession.json", "audit.json"} <= names
    messages = json.loads(archive.read("whatsapp/message.json"))
    assert [(m["direction"], m["type"], m["caption"]) for m in messages] == [("in", "image", "look")]
    [media_name] = [n for n in names if n.startswith("media/")]
    assert archive.read(media_name) == PNG
    [endpoint] = json.loads(archive.read("whatsapp/webhookendpoint.json"))
    assert endpoint["url"] == "http://127.0.0.1:9/hook" and "secret_encrypted" not in endpoint
    with tenant_context(named.acme):
        secret = WebhookEndpoint.objects.get().secret_encrypted
    assert secret not in archive.read("whatsapp/webhookendpoint.json").decode()
    workspace = json.loads(archive.read("workspace.json"))
    assert workspace["tenant"]["slug"] == "acme" and {m["email"] for m in workspace["members"]} == {
        "alice@acme.test", "bob@acme.test"}
    assert any(row["action"] == "backups.data_export_requested" for row in json.loads(archive.read("audit.json")))

    # Only the tenant's owner, only with a good token, only for a day.
    assert as_user(named.bob).get(path).status_code == 404
    assert as_user(named.carol).get(path).status_code == 404
    page = as_user(named.alice)
    assert page.get(path[:-3] + "xyz").status_code == 404
    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert page.get(path).status_code == 302
    assert exports.delete_expired() == 1


def test_exports_are_rate_limited_and_only_for_owners(named, as_user, settings):
    settings.BACKUP_EXPORTS_PER_DAY = 2
    assert as_user(named.bob).get("/data-export/").status_code == 404
    for _ in range(2):
        actions.request_export(named.acme, acting_user=named.alice)
    with pytest.raises(Exception) as refused:
        actions.request_export(named.acme, acting_user=named.alice)
    assert refused.value.status == 429 and refused.value.wait > 0
    actions.request_export(named.globex, acting_user=named.carol)  # another tenant has its own allowance


async def test_progress_reaches_the_owner_and_the_admin_only(named, client, private_layer):
    from channels.db import database_sync_to_async

    for path, who in (("/ws/data-export/", named.bob), ("/ws/backups/", named.alice), ("/ws/backups/", named.carol),
                      ("/ws/backups/", None)):
        ws, connected, code = await open_socket(client, who, path)
        assert not connected and code == 4404, (path, who)

    owner, connected, _ = await open_socket(client, named.alice, "/ws/data-export/")
    platform, connected_too, _ = await open_socket(client, named.admin, "/ws/backups/")
    assert connected and connected_too
    export = await database_sync_to_async(actions.request_export)(named.acme, acting_user=named.alice)
    first = await owner.receive_json_from(timeout=10)
    assert first["type"] == "work.update" and first["data"]["object"] == "dataexport"
    assert first["data"]["id"] == export.pk
    backup = await database_sync_to_async(actions.start_backup)(kind="tenant", tenant=named.globex,
                                                                acting_user=named.admin, verify=False)
    seen = []
    while not await platform.receive_nothing(timeout=0.5):
        seen.append(await platform.receive_json_from())
    assert {(m["data"]["object"], m["data"]["id"]) for m in seen} == {("backup", backup.pk)}
    assert seen[-1]["data"]["status"] == "succeeded" and seen[-1]["data"]["progress"] == 100
    to_owner = []
    while not await owner.receive_nothing(timeout=0.5):
        to_owner.append(await owner.receive_json_from())
    assert {m["data"]["object"] for m in to_owner} == {"dataexport"}  # Globex's backup never reaches Acme's owner
    await owner.disconnect()
    await platform.disconnect()
