"""Canned replies (CRUD over the API and the page, codes kept in lower case and unique, used by the composer as
"/code") and internal notes (members read them, owners/admins/agents write them, never sent to WhatsApp; deleted by
their author or an owner or admin). Audited; another tenant's are 404.

Acme: alice (owner), bob (agent), vera (viewer); Globex: carol (owner).
"""
import pytest
from django_tenants.utils import tenant_context

from accounts.models import Membership
from audit.models import AuditLog
from conftest import make_user
from whatsapp.inbox.models import CannedReply, ConversationNote
from whatsapp.messaging import actions as messaging
from whatsapp.messaging import drain as sending
from whatsapp.models import Message, WhatsAppSession
from whatsapp.tests.support import error, ok

V1 = "/api/v1"


@pytest.fixture
def vera(named):
    user = make_user("vera@acme.test", full_name="Vera Viewer")
    Membership.objects.create(user=user, tenant=named.acme, role=Membership.Role.VIEWER)
    return user


@pytest.fixture
def clients(named, api_as, vera):
    return {"alice": api_as(named.alice), "bob": api_as(named.bob), "vera": api_as(vera),
            "carol": api_as(named.carol)}


@pytest.fixture
def chat(named):
    with tenant_context(named.acme):
        session = WhatsAppSession.objects.create(name="front-desk", phone="+14155550123",
                                                 status=WhatsAppSession.Status.CONNECTED)
        jid = "6281234567890@s.whatsapp.net"
        message = messaging.store_inbound(session, {"id": "IN1", "chat": jid, "sender": jid, "from_me": False,
                                                    "sender_phone": "+6281234567890", "type": "text",
                                                    "text": "How much?"})
        return message.conversation.pk


def test_canned_replies_crud_over_the_api(named, clients):
    created = ok(clients["alice"].post(f"{V1}/canned-replies", {"code": "/Price", "text": "From $9 a month."},
                                       format="json"), 201)
    assert created["code"] == "price" and created["text"] == "From $9 a month."
    ok(clients["alice"].post(f"{V1}/canned-replies", {"code": "hours", "text": "9 to 5."}, format="json"), 201)
    listed = clients["vera"].get(f"{V1}/canned-replies").json()  # every member reads them
    assert [r["code"] for r in listed["data"]] == ["hours", "price"] and listed["pagination"]["total"] == 2
    assert ok(clients["bob"].get(f"{V1}/canned-replies/{created['id']}"))["text"] == "From $9 a month."

    error(clients["alice"].post(f"{V1}/canned-replies", {"code": "PRICE", "text": "again"}, format="json"), 409,
          "canned_code_taken")
    error(clients["alice"].patch(f"{V1}/canned-replies/{created['id']}", {"code": "hours"}, format="json"), 409,
          "canned_code_taken")
    changed = ok(clients["alice"].patch(f"{V1}/canned-replies/{created['id']}", {"text": "From $12."}, format="json"))
    assert (changed["code"], changed["text"]) == ("price", "From $12.")
    for body in ({"code": "two words", "text": "x"}, {"code": "price!", "text": "x"}, {"code": "", "text": "x"},
                 {"code": "ok", "text": "   "}, {"code": "ok"}, {"code": "ok", "text": "x", "extra": 1},
                 {"code": "x" * 33, "text": "x"}, {"code": "ok", "text": "x" * 4097}):
        error(clients["alice"].post(f"{V1}/canned-replies", body, format="json"), 400, "validation_error")

    # Agents and viewers use them; owners and admins manage them. Another workspace sees none of them.
    error(clients["bob"].post(f"{V1}/canned-replies", {"code": "mine", "text": "x"}, format="json"), 403,
          "permission_denied")
    error(clients["bob"].delete(f"{V1}/canned-replies/{created['id']}"), 403, "permission_denied")
    error(clients["carol"].get(f"{V1}/canned-replies/{created['id']}"), 404, "not_found")
    error(clients["carol"].patch(f"{V1}/canned-replies/{created['id']}", {"text": "x"}, format="json"), 404,
          "not_found")
    assert clients["carol"].get(f"{V1}/canned-replies").json()["data"] == []

    assert clients["alice"].delete(f"{V1}/canned-replies/{created['id']}").status_code == 204
    with tenant_context(named.acme):
        assert list(CannedReply.objects.values_list("code", flat=True)) == ["hours"]
        actions = list(AuditLog.objects.filter(action__startswith="whatsapp.canned_reply").order_by("id")
                       .values_list("action", flat=True))
        assert actions == ["whatsapp.canned_reply_created", "whatsapp.canned_reply_created",
                           "whatsapp.canned_reply_updated", "whatsapp.canned_reply_deleted"]


def test_canned_replies_page_and_the_composer_shortcut(named, clients, chat, client, monkeypatch, vera):
    monkeypatch.setattr(sending, "wake", lambda *args, **kwargs: None)
    client.force_login(named.alice)
    made = client.post("/conversations/canned-replies/", {"action": "create", "code": "price",
                                                          "text": "From $9 a month."})
    assert made.status_code == 302 and made.url == "/conversations/canned-replies/"
    page = client.get("/conversations/canned-replies/")
    assert page.status_code == 200 and b"From $9 a month." in page.content
    taken = client.post("/conversations/canned-replies/", {"action": "create", "code": "Price", "text": "x"},
                        follow=True)
    assert b"is taken" in taken.content
    with tenant_context(named.acme):
        reply = CannedReply.objects.get()
    assert client.post("/conversations/canned-replies/", {"action": "update", "reply": reply.pk, "code": "price",
                                                          "text": "From $10."}).status_code == 302
    assert client.post("/conversations/canned-replies/", {"action": "delete", "reply": 999999}).status_code == 404

    # The conversation page offers them to the composer; "/price" alone sends the reply's text.
    client.force_login(named.bob)
    shown = client.get(f"/conversations/{chat}/")
    assert b'"code": "price"' in shown.content and b"From $10." in shown.content
    sent = client.post(f"/conversations/{chat}/", {"action": "send", "text": "/Price"}, HTTP_ACCEPT="application/json")
    assert sent.status_code == 202
    client.post(f"/conversations/{chat}/", {"action": "send", "text": "/nothing"}, HTTP_ACCEPT="application/json")
    with tenant_context(named.acme):
        assert list(Message.objects.filter(direction="out").order_by("id").values_list("text", flat=True)) == [
            "From $10.", "/nothing"]
    # Agents and viewers see the page but do not change it.
    assert client.post("/conversations/canned-replies/", {"action": "delete", "reply": reply.pk}).status_code == 403
    client.force_login(vera)
    viewed = client.get("/conversations/canned-replies/")
    assert viewed.status_code == 200 and b"From $10." in viewed.content and b'data-testid="canned-new"' not in \
        viewed.content
    with tenant_context(named.acme):
        assert CannedReply.objects.filter(pk=reply.pk).exists()


def test_notes_are_for_members_and_never_sent(named, clients, chat):
    with tenant_context(named.acme):
        messages_before = Message.objects.count()
    note = ok(clients["bob"].post(f"{V1}/conversations/{chat}/notes", {"text": "Asked for a discount; check."},
                                  format="json"), 201)
    assert note["author"]["email"] == "bob@acme.test" and note["conversation_id"] == chat
    ok(clients["alice"].post(f"{V1}/conversations/{chat}/notes", {"text": "OK to give 10%."}, format="json"), 201)
    listed = clients["vera"].get(f"{V1}/conversations/{chat}/notes").json()
    assert [n["text"] for n in listed["data"]] == ["Asked for a discount; check.", "OK to give 10%."]
    with tenant_context(named.acme):
        # A note is no message: nothing queued, nothing for the session host to send.
        assert Message.objects.count() == messages_before and ConversationNote.objects.count() == 2

    error(clients["vera"].post(f"{V1}/conversations/{chat}/notes", {"text": "x"}, format="json"), 403,
          "permission_denied")
    error(clients["bob"].post(f"{V1}/conversations/{chat}/notes", {"text": " \n "}, format="json"), 400,
          "validation_error")
    error(clients["bob"].post(f"{V1}/conversations/{chat}/notes", {"text": "x" * 4001}, format="json"), 400,
          "validation_error")
    error(clients["carol"].get(f"{V1}/conversations/{chat}/notes"), 404, "not_found")
    error(clients["carol"].post(f"{V1}/conversations/{chat}/notes", {"text": "x"}, format="json"), 404, "not_found")
    error(clients["carol"].delete(f"{V1}/conversations/{chat}/notes/{note['id']}"), 404, "not_found")

    alices = listed["data"][1]["id"]
    error(clients["bob"].delete(f"{V1}/conversations/{chat}/notes/{alices}"), 403, "not_your_note")
    error(clients["bob"].delete(f"{V1}/conversations/{chat}/notes/999999"), 404, "not_found")
    assert clients["bob"].delete(f"{V1}/conversations/{chat}/notes/{note['id']}").status_code == 204
    assert clients["alice"].delete(f"{V1}/conversations/{chat}/notes/{alices}").status_code == 204
    with tenant_context(named.acme):
        assert not ConversationNote.objects.exists()
        assert AuditLog.objects.filter(action="whatsapp.conversation_note_added").count() == 2
        assert AuditLog.objects.filter(action="whatsapp.conversation_note_deleted").count() == 2


def test_notes_on_the_conversation_page(named, chat, client, vera):
    client.force_login(named.bob)
    page = f"/conversations/{chat}/"
    added = client.post(page, {"action": "add_note", "text": "Call back at 3."})
    assert added.status_code == 302 and added.url == page
    shown = client.get(page)
    assert b"Call back at 3." in shown.content and b"Bob Member" in shown.content
    with tenant_context(named.acme):
        note = ConversationNote.objects.get()
    empty = client.post(page, {"action": "add_note", "text": ""}, follow=True)
    assert b"1 to 4000 characters" in empty.content
    client.force_login(vera)
    assert client.post(page, {"action": "add_note", "text": "x"}).status_code == 403
    viewed = client.get(page)
    assert b"Call back at 3." in viewed.content and b'data-testid="note-form"' not in viewed.content
    client.force_login(named.alice)  # the owner deletes anyone's note
    assert client.post(page, {"action": "delete_note", "note": note.pk}).status_code == 302
    with tenant_context(named.acme):
        assert not ConversationNote.objects.exists()


def test_the_composer_replies_to_a_message_of_the_conversation(named, chat, client, monkeypatch):
    monkeypatch.setattr(sending, "wake", lambda *args, **kwargs: None)
    with tenant_context(named.acme):
        inbound = Message.objects.get(direction="in")
        other = Message.objects.create(session=inbound.session, direction="in", status="received",
                                       chat_jid="6289999999999@s.whatsapp.net", text="elsewhere",
                                       provider_message_id="IN-other")
    client.force_login(named.bob)
    page = f"/conversations/{chat}/"
    assert f'data-testid="reply-to-{inbound.pk}"'.encode() in client.get(page).content
    sent = client.post(page, {"action": "send", "text": "$9 a month.", "reply_to": inbound.pk},
                       HTTP_ACCEPT="application/json")
    assert sent.status_code == 202
    with tenant_context(named.acme):
        assert Message.objects.get(direction="out").reply_to == inbound.provider_message_id == "IN1"
    for quoted in (other.pk, "abc", 999999):  # another conversation's message, garbage, nothing
        refused = client.post(page, {"action": "send", "text": "x", "reply_to": quoted},
                              HTTP_ACCEPT="application/json")
        assert refused.status_code == 400 and refused.json()["code"] == "unknown_reply_to"
    with tenant_context(named.acme):
        assert Message.objects.filter(direction="out").count() == 1


def test_the_composer_sends_an_attachment_with_the_text_as_caption(named, chat, client, monkeypatch, settings,
                                                                    tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from whatsapp.messaging.tests.test_message_types import png_bytes

    settings.MEDIA_ROOT = str(tmp_path / "media")
    monkeypatch.setattr(sending, "wake", lambda *args, **kwargs: None)
    client.force_login(named.bob)
    page = f"/conversations/{chat}/"
    photo = SimpleUploadedFile("menu.png", png_bytes("green"), content_type="image/png")
    sent = client.post(page, {"action": "send", "text": "Our menu", "file": photo}, HTTP_ACCEPT="application/json")
    assert sent.status_code == 202, sent.json()
    notes = SimpleUploadedFile("notes.txt", b"Opening hours: 9 to 5", content_type="text/plain")
    assert client.post(page, {"action": "send", "text": "", "file": notes},
                       HTTP_ACCEPT="application/json").status_code == 202  # anything else goes as a document
    empty = SimpleUploadedFile("empty.png", b"", content_type="image/png")
    refused = client.post(page, {"action": "send", "text": "", "file": empty}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 400 and refused.json()["code"] == "empty_media"
    with tenant_context(named.acme):
        photo_sent, document = Message.objects.filter(direction="out").order_by("id")
        assert (photo_sent.type, photo_sent.caption, photo_sent.media_mimetype, photo_sent.media_filename) == (
            "image", "Our menu", "image/png", "menu.png")
        assert (document.type, document.caption, document.media_filename) == ("document", "", "notes.txt")
