"""Encryption at rest (core.crypto, core.keyrotation, manage.py rotate_encryption_key): the keyring (newest encrypts,
all decrypt), secrets on it whatever WHATSAPP_ENCRYPT_MESSAGES says (and the old SECRET_KEY-derived form still
read), message bodies, captions, previews, campaign texts, webhook payloads and media files encrypted when it is
on and read back everywhere, plaintext rows written before still read, searching refused with a code, and rotation:
data readable before, half-way through and after it, and a value under a removed key answered 503 with its code.

alice owns Acme, carol owns Globex.
"""
import base64
import hashlib
import io
import json
import os
import zipfile

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_tenants.utils import tenant_context

from core import crypto, keyrotation
from whatsapp.campaigns.models import Campaign, CampaignRecipient, MessageTemplate
from whatsapp.campaigns.planning import insert_recipients
from whatsapp.messaging import actions as messaging
from whatsapp.messaging.tests.test_message_types import make_session, png_bytes
from whatsapp.models import Conversation, Message, WebhookDelivery, WebhookEndpoint
from whatsapp.tests.support import error, ok
from whatsapp.webhooks import delivery as wire

V1 = "/api/v1"
TO = "+6281234567890"
PNG = png_bytes("green", size=(16, 16))
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _media_and_limits(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.WHATSAPP_RATE_LIMIT_PER_COMPANY = -1
    settings.WHATSAPP_ENCRYPTION_KEY = [OLD]


@pytest.fixture
def encrypted(settings):
    settings.WHATSAPP_ENCRYPT_MESSAGES = True
    return settings


def raw(table, column, pk):
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}"::text FROM "{table}" WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def send(client, text="Hello Budi", **extra):
    return ok(client.post(f"{V1}/messages", {"session": "front-desk", "to": TO, "text": text, **extra},
                          format="json"), 202)


def inbound(session, text="Is the shop open?", **data):
    return messaging.store_inbound(session, {"id": f"IN{os.urandom(4).hex()}", "chat": "6281234567890@s.whatsapp.net",
                                             "sender": "6281234567890@s.whatsapp.net", "sender_phone": TO,
                                             "type": "text", "text": text, **data})


# --- the keyring ---------------------------------------------------------------------------------------------------


def test_the_newest_key_encrypts_and_every_key_decrypts(settings):
    settings.WHATSAPP_ENCRYPT_MESSAGES = True
    under_old = crypto.seal("secret plans")
    assert under_old.startswith("enc:v1:") and "secret" not in under_old
    settings.WHATSAPP_ENCRYPTION_KEY = [NEW, OLD]
    under_new = crypto.seal("secret plans")
    assert crypto.unseal(under_old) == crypto.unseal(under_new) == "secret plans"
    assert not crypto.under_newest(under_old) and crypto.under_newest(under_new)
    assert crypto.under_newest(crypto.reseal(under_old))
    settings.WHATSAPP_ENCRYPTION_KEY = [NEW]
    with pytest.raises(crypto.DomainError) as caught:
        crypto.unseal(under_old)
    assert caught.value.code.value == "encryption_key_unavailable" and caught.value.status == 503
    assert "WHATSAPP_ENCRYPTION_KEY" in caught.value.message


def test_plaintext_reads_as_it_is_and_cannot_pass_for_ciphertext(settings):
    settings.WHATSAPP_ENCRYPT_MESSAGES = False
    assert crypto.seal("plain") == "plain" and crypto.unseal("plain") == "plain"
    assert crypto.seal("") == "" and crypto.seal(None) is None
    lookalike = "enc:v1:" + Fernet(NEW).encrypt(b"x").decode()  # a message that looks like a stored token
    assert crypto.seal(lookalike) == "enc:plain:" + lookalike and crypto.unseal(crypto.seal(lookalike)) == lookalike
    assert crypto.unseal("enc: not ours") == "enc: not ours"  # written before the escape existed


def test_files_are_sealed_with_a_header_and_plain_files_still_read(settings):
    settings.WHATSAPP_ENCRYPT_MESSAGES = True
    sealed = crypto.seal_bytes(PNG)
    assert sealed.startswith(crypto.FILE_MAGIC) and PNG not in sealed and crypto.open_bytes(sealed) == PNG
    assert crypto.open_bytes(PNG) == PNG
    settings.WHATSAPP_ENCRYPTION_KEY = [NEW]
    with pytest.raises(crypto.DomainError):
        crypto.open_bytes(sealed)


def test_a_bad_key_or_encryption_without_a_key_is_refused(settings):
    settings.WHATSAPP_ENCRYPTION_KEY = ["not-a-key"]
    assert crypto.key_problems() and "key 1" in crypto.key_problems()[0]
    with pytest.raises(crypto.ImproperlyConfigured):
        crypto.encrypt("x")
    settings.WHATSAPP_ENCRYPTION_KEY, settings.WHATSAPP_ENCRYPT_MESSAGES = [], True
    with pytest.raises(crypto.ImproperlyConfigured):
        crypto.seal("x")


# --- secrets -------------------------------------------------------------------------------------------------------


def legacy_token(secret, material):
    """How webhook secrets were stored before the keyring: Fernet, key derived from SECRET_KEY, no prefix."""
    key = base64.urlsafe_b64encode(hashlib.sha256(b"switchboard.webhooks.secret:" + material.encode()).digest())
    return Fernet(key).encrypt(secret.encode()).decode()


def test_webhook_secrets_move_to_the_keyring_and_survive_a_new_secret_key(named, clients, receiver, settings):
    created = ok(clients["alice"].post(f"{V1}/webhooks", {"url": receiver.url, "events": ["message.received"]},
                                       format="json"), 201)
    with tenant_context(named.acme):
        endpoint = WebhookEndpoint.objects.get(pk=created["endpoint"]["id"])
        assert endpoint.secret_encrypted.startswith("enc:v1:")
        # One written before the keyring, under the key derived from SECRET_KEY: still read.
        old = WebhookEndpoint.objects.create(url=receiver.url, events=["message.received"],
                                             secret_encrypted=legacy_token("whsec_old", settings.SECRET_KEY))
        assert wire.decrypt_secret(old.secret_encrypted) == "whsec_old"

    call_command("rotate_encryption_key", stdout=io.StringIO())
    with tenant_context(named.acme):
        old.refresh_from_db()
        assert old.secret_encrypted.startswith("enc:v1:")
    settings.SECRET_KEY = "a-new-secret-key-" * 4  # rotating SECRET_KEY no longer loses them
    with tenant_context(named.acme):
        assert wire.decrypt_secret(old.secret_encrypted) == "whsec_old"
        assert wire.decrypt_secret(WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted) == created["secret"]
    settings.WHATSAPP_ENCRYPTION_KEY = [NEW]  # the key they are under is gone: a clear failure, not a crash
    with pytest.raises(wire.SecretUnreadable, match="WHATSAPP_ENCRYPTION_KEY"):
        wire.decrypt_secret(old.secret_encrypted)


def test_a_secret_key_fallback_reads_secrets_of_the_previous_secret_key(settings):
    token = legacy_token("whsec_kept", settings.SECRET_KEY)
    previous = settings.SECRET_KEY
    settings.SECRET_KEY = "b-new-secret-key-" * 4
    with pytest.raises(wire.SecretUnreadable):
        wire.decrypt_secret(token)
    settings.SECRET_KEY_FALLBACKS = [previous]
    assert wire.decrypt_secret(token) == "whsec_kept"


def test_two_factor_secrets_are_on_the_keyring(db):
    from allauth.mfa.adapter import get_adapter

    adapter = get_adapter()
    stored = adapter.encrypt("JBSWY3DPEHPK3PXP")
    assert stored.startswith("enc:v1:") and adapter.decrypt(stored) == "JBSWY3DPEHPK3PXP"
    assert adapter.decrypt("JBSWY3DPEHPK3PXP") == "JBSWY3DPEHPK3PXP"  # stored in the clear before


def test_rotation_encrypts_two_factor_secrets_stored_in_the_clear(named):
    from allauth.mfa.adapter import get_adapter
    from allauth.mfa.models import Authenticator

    totp = Authenticator.objects.create(user=named.alice, type=Authenticator.Type.TOTP,
                                        data={"secret": "JBSWY3DPEHPK3PXP"})
    codes = Authenticator.objects.create(user=named.alice, type=Authenticator.Type.RECOVERY_CODES,
                                         data={"seed": "00ff", "used_mask": 0, "migrated_codes": ["a1", "b2"]})
    call_command("rotate_encryption_key", stdout=io.StringIO())
    totp.refresh_from_db()
    codes.refresh_from_db()
    assert totp.data["secret"].startswith("enc:v1:") and codes.data["seed"].startswith("enc:v1:")
    assert all(code.startswith("enc:v1:") for code in codes.data["migrated_codes"]) and codes.data["used_mask"] == 0
    adapter = get_adapter()
    assert adapter.decrypt(totp.data["secret"]) == "JBSWY3DPEHPK3PXP"
    assert [adapter.decrypt(code) for code in codes.data["migrated_codes"]] == ["a1", "b2"]


# --- message bodies ------------------------------------------------------------------------------------------------


def test_bodies_are_encrypted_in_the_database_and_read_back_everywhere(named, clients, encrypted, receiver, as_user,
                                                                       django_capture_on_commit_callbacks):
    session = make_session(named.acme)
    receiver.secret = ok(clients["alice"].post(f"{V1}/webhooks", {"url": receiver.url, "events": [
        "message.received"]}, format="json"), 201)["secret"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = send(clients["alice"], "Your order #123 is ready")
        batch = ok(clients["alice"].post(f"{V1}/messages/batch", {"messages": [
            {"session": "front-desk", "to": TO, "text": "first of two"},
            {"session": "front-desk", "to": TO, "text": "second of two"}]}, format="json"), 202)
    with tenant_context(named.acme):
        with django_capture_on_commit_callbacks(execute=True):
            received = inbound(session, "Thanks! When do you open?")
        for pk, text in [(sent["id"], "Your order"), (batch["messages"][1]["id"], "second"), (received.pk, "Thanks")]:
            stored = raw("whatsapp_message", "text", pk)
            assert stored.startswith("enc:v1:") and text not in stored
        conversation = Conversation.objects.get()
        assert conversation.last_message_preview == "Thanks! When do you open?"
        assert raw("whatsapp_conversation", "last_message_preview", conversation.pk).startswith("enc:v1:")
        delivery = WebhookDelivery.objects.get()
        assert "Thanks" not in raw("whatsapp_webhookdelivery", "payload", delivery.pk)
        assert delivery.payload["data"]["text"] == "Thanks! When do you open?"
    headers, body, verified = receiver.received[-1]
    assert verified and json.loads(body)["data"]["text"] == "Thanks! When do you open?"

    listed = ok(clients["alice"].get(f"{V1}/messages"))
    assert [m["text"] for m in listed] == ["Thanks! When do you open?", "second of two", "first of two",
                                           "Your order #123 is ready"]
    assert ok(clients["alice"].get(f"{V1}/messages/{sent['id']}"))["text"] == "Your order #123 is ready"
    page = as_user(named.alice).get(f"/conversations/{conversation.pk}/")
    assert page.status_code == 200 and "Thanks! When do you open?" in page.content.decode()


def test_the_hosts_written_out_preview_statement_encrypts_too(named, clients, encrypted):
    """The drain records outgoing previews with one hand-written UPDATE (conversations.note_outgoing)."""
    from whatsapp.conversations import actions as conversations

    make_session(named.acme)
    sent = send(clients["alice"], "first")
    with tenant_context(named.acme):
        message = Message.objects.get(pk=sent["id"])
        message.text = "the host's latest"
        conversations.note_outgoing([message])
        conversation = Conversation.objects.get()
        assert raw("whatsapp_conversation", "last_message_preview", conversation.pk).startswith("enc:v1:")
        assert conversation.last_message_preview == "the host's latest"


def test_rows_written_before_encryption_still_read_in_a_mixed_database(named, clients, settings):
    session = make_session(named.acme)
    settings.WHATSAPP_ENCRYPT_MESSAGES = False
    before = send(clients["alice"], "written in the clear")
    settings.WHATSAPP_ENCRYPT_MESSAGES = True
    after = send(clients["alice"], "written encrypted")
    with tenant_context(named.acme):
        assert raw("whatsapp_message", "text", before["id"]) == "written in the clear"
        assert raw("whatsapp_message", "text", after["id"]).startswith("enc:v1:")
        assert sorted(Message.objects.values_list("text", flat=True)) == ["written encrypted", "written in the clear"]
        inbound(session, "in the clear?")
    assert [m["text"] for m in ok(clients["alice"].get(f"{V1}/messages"))][1:] == ["written encrypted",
                                                                                  "written in the clear"]


def test_searching_bodies_answers_a_clear_error_when_they_are_encrypted(named, clients, settings):
    make_session(named.acme)
    send(clients["alice"], "Invoice ready")
    send(clients["alice"], "Something else", caption="")
    settings.WHATSAPP_ENCRYPT_MESSAGES = False
    assert [m["text"] for m in ok(clients["alice"].get(f"{V1}/messages?search=invoice"))] == ["Invoice ready"]
    error(clients["alice"].get(f"{V1}/messages?search={'x' * 201}"), 400, "invalid_search")
    settings.WHATSAPP_ENCRYPT_MESSAGES = True
    refused = error(clients["alice"].get(f"{V1}/messages?search=invoice"), 400, "search_unavailable_encrypted")
    assert "encrypts message bodies" in refused["message"]
    assert len(ok(clients["alice"].get(f"{V1}/messages"))) == 2  # without search: fine


def test_the_openapi_schema_names_the_search_error(db):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/messages"]["get"]
    assert "search" in [p["name"] for p in operation["parameters"]]
    assert "search_unavailable_encrypted" in operation["responses"]["400"]["description"]
    assert "encryption_key_unavailable" in operation["responses"]["503"]["description"]


def test_campaign_texts_written_by_copy_are_encrypted(named, encrypted, settings):
    settings.SPEED_PATH_SQL = True
    with tenant_context(named.acme):
        template = MessageTemplate.objects.create(name="Promo", body="Hi {name}")
        campaign = Campaign.objects.create(name="Spring", template=template)
        insert_recipients(campaign, [("+6281234567890", "Budi", "Hi Budi, 20% off", 0, True)])
        recipient = CampaignRecipient.objects.get()
        assert recipient.text == "Hi Budi, 20% off"
        assert raw("whatsapp_campaignrecipient", "text", recipient.pk).startswith("enc:v1:")


# --- media files ---------------------------------------------------------------------------------------------------


def test_media_files_are_encrypted_on_disk_and_served_decrypted(named, clients, encrypted, settings):
    session = make_session(named.acme)
    with tenant_context(named.acme):
        message = inbound(session, type="image", media=PNG, mimetype="image/png", caption="the receipt")
        path = os.path.join(settings.MEDIA_ROOT, message.media_file)
        assert raw("whatsapp_message", "caption", message.pk).startswith("enc:v1:")
    on_disk = open(path, "rb").read()
    assert on_disk.startswith(crypto.FILE_MAGIC) and PNG not in on_disk
    response = clients["alice"].get(f"{V1}/messages/{message.pk}/media")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PNG
    assert ok(clients["alice"].get(f"{V1}/messages/{message.pk}"))["caption"] == "the receipt"
    error(clients["carol"].get(f"{V1}/messages/{message.pk}/media"), 404, "not_found")


@pytest.mark.django_db(transaction=True)
def test_the_data_export_holds_bodies_and_media_in_the_clear(named, encrypted, as_user):
    from backups.models import DataExport, Status

    session = make_session(named.acme)
    with tenant_context(named.acme):
        inbound(session, type="image", media=PNG, mimetype="image/png", caption="exported caption")
    page = as_user(named.alice)
    assert page.post("/data-export/").status_code == 302
    export = DataExport.objects.get(tenant=named.acme)
    assert export.status == Status.SUCCEEDED, export.error
    download = page.get(f"/data-export/{export.pk}/download")
    assert download.status_code == 200, download
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
        messages = json.loads(archive.read("whatsapp/message.json"))
        [media_name] = [n for n in archive.namelist() if n.startswith("media/")]
        assert archive.read(media_name) == PNG
    assert [m["caption"] for m in messages] == ["exported caption"]


# --- rotation ------------------------------------------------------------------------------------------------------


def test_rotation_keeps_everything_readable_before_during_and_after(named, clients, encrypted, settings):
    acme_session, globex_session = make_session(named.acme), make_session(named.globex)
    with tenant_context(named.acme):
        acme_ids = [inbound(acme_session, f"acme {n}").pk for n in range(5)]
        picture = inbound(acme_session, type="image", media=PNG, mimetype="image/png", caption="pic")
    with tenant_context(named.globex):
        globex_ids = [inbound(globex_session, f"globex {n}").pk for n in range(3)]

    settings.WHATSAPP_ENCRYPTION_KEY = [NEW, OLD]  # before: the new key in front, nothing rotated yet
    assert [m["text"] for m in ok(clients["alice"].get(f"{V1}/messages?direction=in"))][1:] == [
        f"acme {n}" for n in reversed(range(5))]
    with pytest.raises(CommandError, match="not finished"):
        call_command("rotate_encryption_key", "--check", stdout=io.StringIO())

    out = io.StringIO()  # half-way: one tenant done, the other not
    call_command("rotate_encryption_key", "--tenant", "globex", "--batch-size", "2", stdout=out)
    assert "globex (t_test_globex): whatsapp_message.text 2/3" in out.getvalue()
    assert "globex (t_test_globex): whatsapp_message.text 3/3" in out.getvalue()
    with tenant_context(named.globex):
        assert all(crypto.under_newest(raw("whatsapp_message", "text", pk)) for pk in globex_ids)
    with tenant_context(named.acme):
        assert not any(crypto.under_newest(raw("whatsapp_message", "text", pk)) for pk in acme_ids)
    assert len(ok(clients["alice"].get(f"{V1}/messages"))) == 6
    assert [m["text"] for m in ok(clients["carol"].get(f"{V1}/messages"))] == [
        f"globex {n}" for n in reversed(range(3))]

    out = io.StringIO()
    call_command("rotate_encryption_key", "--batch-size", "2", stdout=out)
    assert "acme (t_test_acme): media files 1/1" in out.getvalue() and "0 unreadable" in out.getvalue()
    call_command("rotate_encryption_key", "--check", stdout=io.StringIO())  # nothing left: exits cleanly
    again = io.StringIO()
    call_command("rotate_encryption_key", stdout=again)  # safe to re-run: nothing rewritten
    assert ", 0 re-encrypted, 0 unreadable" in again.getvalue()

    settings.WHATSAPP_ENCRYPTION_KEY = [NEW]  # after: the old key dropped
    assert len(ok(clients["alice"].get(f"{V1}/messages"))) == 6
    with tenant_context(named.acme):
        assert Conversation.objects.get().last_message_preview == "📷 Photo: pic"
        response = clients["alice"].get(f"{V1}/messages/{picture.pk}/media")
        assert b"".join(response.streaming_content) == PNG


def test_a_value_under_a_removed_key_is_a_clear_503_not_a_500(named, clients, encrypted, settings, as_user):
    session = make_session(named.acme)
    with tenant_context(named.acme):
        message = inbound(session, "under the old key")
        conversation = Conversation.objects.get()
    settings.WHATSAPP_ENCRYPTION_KEY = [NEW]  # dropped without rotating
    for response in (clients["alice"].get(f"{V1}/messages"), clients["alice"].get(f"{V1}/messages/{message.pk}")):
        refused = error(response, 503, "encryption_key_unavailable")
        assert "rotate_encryption_key" in refused["message"]
    page = as_user(named.alice).get(f"/conversations/{conversation.pk}/")
    assert page.status_code == 503 and "WHATSAPP_ENCRYPTION_KEY" in page.content.decode()

    err = io.StringIO()
    with pytest.raises(CommandError, match="put it back"):
        call_command("rotate_encryption_key", stdout=io.StringIO(), stderr=err)
    assert f"whatsapp_message.text id {message.pk}" in err.getvalue()
    settings.WHATSAPP_ENCRYPTION_KEY = [NEW, OLD]  # put back: readable again, and rotation finishes
    call_command("rotate_encryption_key", stdout=io.StringIO())
    settings.WHATSAPP_ENCRYPTION_KEY = [NEW]
    assert ok(clients["alice"].get(f"{V1}/messages/{message.pk}"))["text"] == "under the old key"


def test_rotation_with_encryption_switched_off_writes_bodies_back_in_the_clear(named, encrypted, settings):
    session = make_session(named.acme)
    with tenant_context(named.acme):
        message = inbound(session, "bring it back")
        picture = inbound(session, type="image", media=PNG, mimetype="image/png")
    settings.WHATSAPP_ENCRYPT_MESSAGES = False
    call_command("rotate_encryption_key", "--tenant", "acme", stdout=io.StringIO())
    with tenant_context(named.acme):
        assert raw("whatsapp_message", "text", message.pk) == "bring it back"
        assert open(os.path.join(settings.MEDIA_ROOT, Message.objects.get(pk=picture.pk).media_file),
                    "rb").read() == PNG


def test_the_command_prints_a_new_key_and_refuses_an_unknown_tenant(db):
    out = io.StringIO()
    call_command("rotate_encryption_key", "--new-key", stdout=out)
    Fernet(out.getvalue().strip())
    with pytest.raises(CommandError, match="No tenant"):
        call_command("rotate_encryption_key", "--tenant", "nobody", stdout=io.StringIO())


def test_every_encrypted_column_is_found_by_rotation():
    labels = {c.label for c in keyrotation.encrypted_columns(tenant=True)}
    assert {"whatsapp_message.text", "whatsapp_message.caption", "whatsapp_conversation.last_message_preview",
            "whatsapp_campaignrecipient.text", "whatsapp_webhookdelivery.payload",
            "whatsapp_webhookendpoint.secret_encrypted", "whatsapp_receptionist.bot_secret"} <= labels
