"""Every message type through POST /api/v1/messages: each one sent end to end through an in-process session host
on the simulator (what the provider was given is checked), replies and reactions, every bad-input code with no
row and no media file left behind, multipart uploads and Idempotency-Key with files.

alice owns Acme, bob is a member of Acme, carol owns Globex. Celery is eager: the send task runs on commit.
Media files are written when their row commits; tests that assert "no file" run the on-commit callbacks
(django_capture_on_commit_callbacks(execute=True)) so a file that would be written is.
"""
import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import tenant_context

from whatsapp.conversations import actions as conversations
from whatsapp.models import Message, WhatsAppSession
from whatsapp.tests.support import error, link_session, ok

V1 = "/api/v1"
PHONE = "+14155550123"
TO = "+6281234567890"


# --- sample media --------------------------------------------------------------------------------------------------

def png_bytes(color="red", size=(4, 4)):
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="png")
    return out.getvalue()


PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
EXE = b"MZ" + b"\x00" * 256


def upload(name, content, content_type="application/octet-stream"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def media_files(root):
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, name) for name in names]
    return sorted(found)


# --- fixtures ------------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _types_not_pacing(settings):
    """These tests are about message types: no pacing between sends, and a fresh per-tenant rate window."""
    from redis import Redis

    from whatsapp.messaging import ratelimit

    settings.WHATSAPP_PACING_ENABLED = False
    redis = Redis.from_url(settings.REDIS_URL)
    for key in redis.scan_iter(match=f"*{ratelimit.KEY_PREFIX}*", count=500):
        redis.delete(key)


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def sent_to_provider(monkeypatch):
    """What the simulator's send() was given, in order (the OutgoingMessage the pipeline built)."""
    from whatsapp.providers.simulator import SimulatorProvider

    seen = []
    original = SimulatorProvider.send

    def send(self, to, message, **chosen):
        seen.append((to, message))
        return original(self, to, message, **chosen)

    monkeypatch.setattr(SimulatorProvider, "send", send)
    return seen


def post(client, body, key=None, multipart=False):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    if multipart:
        return client.post(f"{V1}/messages", body, format="multipart", **headers)
    return client.post(f"{V1}/messages", body, format="json", **headers)


def load(tenant, pk):
    with tenant_context(tenant):
        return Message.objects.get(pk=pk)


def count(tenant):
    with tenant_context(tenant):
        return Message.objects.count()


def make_session(tenant, name="front-desk", **fields):
    fields.setdefault("status", WhatsAppSession.Status.CONNECTED)
    with tenant_context(tenant):
        return WhatsAppSession.objects.create(name=name, phone=PHONE, **fields)


BASE = {"session": "front-desk", "to": TO}


# --- end to end ----------------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_every_type_is_sent_through_the_simulator(named, clients, host, clock, media_root, sent_to_provider):
    link_session(clients["alice"], host, clock)
    alice = clients["alice"]
    image = png_bytes()
    first = ok(post(alice, {**BASE, "type": "text", "text": "Hello"}), 202)
    requests = [
        ({**BASE, "type": "image", "file": upload("red.png", image), "caption": "red"}, True),
        ({**BASE, "type": "document", "file": upload("report.pdf", PDF), "caption": "Q3"}, True),
        ({**BASE, "type": "audio", "file": upload("hello.mp3", MP3)}, True),
        ({**BASE, "type": "video", "file": upload("clip.mp4", MP4), "caption": "clip"}, True),
        ({**BASE, "type": "location", "latitude": -6.2, "longitude": 106.8, "text": "Jakarta"}, False),
        ({**BASE, "type": "contact", "contact": {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"}}, False),
        ({**BASE, "type": "contact", "contact": "BEGIN:VCARD\nVERSION:3.0\nFN:Grace Hopper\nTEL:+15550100\n"
                                                "END:VCARD"}, False),
        ({**BASE, "type": "text", "text": "Re: hello", "reply_to": first["id"]}, False),
        ({**BASE, "type": "reaction", "reaction": "👍", "reply_to": first["id"]}, False),
        ({**BASE, "type": "reaction", "reaction": "", "reply_to": "3EB0ABCDEF012345"}, False),
    ]
    ids = [first["id"]]
    for body, multipart in requests:
        data = ok(post(alice, body, multipart=multipart), 202)
        assert data["status"] == "queued" and data["type"] == body["type"]
        ids.append(data["id"])
    rows = [load(named.acme, pk) for pk in ids]
    assert [row.status for row in rows] == ["sent"] * len(ids)
    first_wa_id = rows[0].provider_message_id
    given = [message for _, message in sent_to_provider]
    assert [m.type for m in given] == [row.type for row in rows]

    _, img, doc, audio, video, location, contact, vcard, reply, reaction, unreaction = given
    assert (img.media, img.mimetype, img.caption) == (image, "image/png", "red")
    assert (doc.media, doc.mimetype, doc.filename, doc.caption) == (PDF, "application/pdf", "report.pdf", "Q3")
    assert (audio.mimetype, audio.media) == ("audio/mpeg", MP3)
    assert (video.mimetype, video.caption) == ("video/mp4", "clip")
    assert (location.latitude, location.longitude, location.text) == (-6.2, 106.8, "Jakarta")
    assert "FN:Ada Lovelace" in contact.contact_vcard and "waid=442079460958:+442079460958" in contact.contact_vcard
    assert "FN:Grace Hopper" in vcard.contact_vcard
    assert (reply.text, reply.reply_to, reply.quoted_from_me, reply.quoted_text) == ("Re: hello", first_wa_id,
                                                                                     True, "Hello")
    assert (reaction.reaction, reaction.reaction_to, reaction.reply_to) == ("👍", first_wa_id, "")
    assert (unreaction.reaction, unreaction.reaction_to) == ("", "3EB0ABCDEF012345")

    # Stored under the tenant's own directory, named by the row, readable back through the API.
    stored = rows[1]
    assert stored.media_file.startswith("t_test_acme/whatsapp/") and stored.media_file.endswith(".png")
    assert (media_root / stored.media_file).read_bytes() == image
    assert len(media_files(media_root)) == 4
    payload = ok(alice.get(f"{V1}/messages/{stored.pk}"))
    assert payload["media"] == {"url": None, "mimetype": "image/png", "size": len(image), "filename": "red.png",
                                "stored": True, "error": None}
    assert payload["caption"] == "red"
    assert ok(alice.get(f"{V1}/messages/{ids[6]}"))["contact_card"]["phone"] == "+442079460958"
    assert ok(alice.get(f"{V1}/messages/{ids[5]}"))["location"] == {"latitude": -6.2, "longitude": 106.8,
                                                                      "name": "Jakarta"}
    assert ok(alice.get(f"{V1}/messages/{ids[9]}"))["reply_to"] == first_wa_id


@pytest.mark.django_db(transaction=True)
def test_a_stored_media_file_that_went_missing_fails_the_send_with_a_reason(named, clients, host, clock,
                                                                              media_root, monkeypatch):
    from whatsapp.messaging import media

    link_session(clients["alice"], host, clock)
    monkeypatch.setattr(media, "write", lambda relative, content: None)  # the disk lost it
    data = ok(post(clients["alice"], {**BASE, "type": "image", "file": upload("a.png", png_bytes())},
                   multipart=True), 202)
    failed = load(named.acme, data["id"])
    assert failed.status == "failed" and failed.failure_reason.startswith("media_missing:")


# --- bad input ----------------------------------------------------------------------------------------------------

def image_file():
    return upload("a.png", png_bytes())


BAD_INPUT = [
    ({**BASE, "type": "hologram"}, 400, "unsupported_type"),
    ({**BASE, "type": "text"}, 400, "missing_text"),
    ({**BASE, "type": "text", "text": "x" * 4097}, 400, "text_too_long"),
    ({**BASE, "type": "image"}, 400, "missing_media"),
    ({**BASE, "type": "image", "file": image_file, "media_url": "https://example.com/a.png"}, 400,
     "media_url_and_file"),
    ({**BASE, "type": "image", "file": image_file, "caption": "x" * 1025}, 400, "caption_too_long"),
    ({**BASE, "type": "audio", "file": lambda: upload("a.mp3", MP3), "caption": "hi"}, 400, "unexpected_caption"),
    ({**BASE, "type": "text", "text": "hi", "file": image_file}, 400, "unexpected_media"),
    ({**BASE, "type": "image", "file": lambda: upload("a.pdf", PDF)}, 415, "unsupported_media_type"),
    ({**BASE, "type": "video", "file": image_file}, 415, "unsupported_media_type"),
    ({**BASE, "type": "document", "file": lambda: upload("setup.exe", EXE)}, 415, "unsupported_media_type"),
    ({**BASE, "type": "document", "file": lambda: upload("empty.pdf", b"")}, 400, "empty_media"),
    ({**BASE, "type": "image", "file": lambda: upload("big.png", png_bytes(size=(600, 600)) + b"\0" * 20000)},
     413, "media_too_large"),
    ({**BASE, "type": "image", "media_url": "ftp://example.com/a.png"}, 400, "invalid_media_url"),
    ({**BASE, "type": "location", "latitude": 91, "longitude": 0}, 400, "invalid_location"),
    ({**BASE, "type": "location", "latitude": 0, "longitude": -180.5}, 400, "invalid_location"),
    ({**BASE, "type": "location", "latitude": 10}, 400, "invalid_location"),
    ({**BASE, "type": "contact"}, 400, "invalid_contact"),
    ({**BASE, "type": "contact", "contact": {"name": "Ada"}}, 400, "invalid_contact"),
    ({**BASE, "type": "contact", "contact": {"name": "", "phone": "+442079460958"}}, 400, "invalid_contact"),
    ({**BASE, "type": "contact", "contact": "FN:Ada\nTEL:+1555"}, 400, "invalid_contact"),
    ({**BASE, "type": "reaction", "reaction": "👍"}, 400, "missing_reply_to"),
    ({**BASE, "type": "reaction", "reply_to": "3EB0ABCDEF012345"}, 400, "missing_reaction"),
    ({**BASE, "type": "reaction", "reaction": "ok", "reply_to": "3EB0ABCDEF012345"}, 400, "invalid_reaction"),
    ({**BASE, "type": "text", "text": "hi", "reply_to": 999999}, 400, "unknown_reply_to"),
    ({**BASE, "type": "text", "text": "hi", "reply_to": "not an id!"}, 400, "invalid_reply_to"),
    ({**BASE, "type": "image", "file": image_file, "to": "not a number"}, 400, "invalid_recipient"),
    ({**BASE, "session": "asleep", "type": "image", "file": image_file}, 409, "session_not_connected"),
]


@pytest.mark.parametrize("body,status,code", BAD_INPUT, ids=[f"{i}-{c[2]}" for i, c in enumerate(BAD_INPUT)])
def test_bad_input_is_refused_with_a_code_and_leaves_no_row_and_no_file(named, clients, settings, media_root,
                                                                        django_capture_on_commit_callbacks,
                                                                        body, status, code):
    settings.WHATSAPP_MEDIA_MAX_MB = 0.01
    make_session(named.acme)
    make_session(named.acme, "asleep", status=WhatsAppSession.Status.DISCONNECTED)
    body = {k: (v() if callable(v) else v) for k, v in body.items()}
    multipart = "file" in body
    with django_capture_on_commit_callbacks(execute=True):
        err = error(post(clients["alice"], body, multipart=multipart), status, code)
    if code == "unsupported_type":
        assert err["details"] == {"supported": ["text", "image", "document", "audio", "video", "location",
                                               "contact", "reaction"]}
    assert count(named.acme) == 0
    assert media_files(media_root) == []


def test_reply_to_names_one_of_this_sessions_messages_that_whatsapp_has(named, clients, media_root):
    session = make_session(named.acme)
    other = make_session(named.acme, "other")
    make_session(named.globex)
    with tenant_context(named.acme):
        queued = Message.objects.create(session=session, direction="out", chat_jid="1@s.whatsapp.net", text="x")
        elsewhere = Message.objects.create(session=other, direction="out", chat_jid="1@s.whatsapp.net", text="x",
                                           status="sent", provider_message_id="3EB0OTHER")
        received = Message.objects.create(session=session, direction="in", chat_jid="1@s.whatsapp.net",
                                          status="received", provider_message_id="3A0INBOUND")
    alice, carol = clients["alice"], clients["carol"]
    for target in (queued.pk, elsewhere.pk):  # not sent yet / another session's
        error(post(alice, {**BASE, "text": "re", "reply_to": target}), 400, "unknown_reply_to")
    data = ok(post(alice, {**BASE, "text": "re", "reply_to": str(received.pk)}), 202)  # multipart sends strings
    assert load(named.acme, data["id"]).reply_to == "3A0INBOUND"
    # Globex cannot point at Acme's messages: its own schema has no such row.
    error(post(carol, {**BASE, "text": "re", "reply_to": received.pk}), 400, "unknown_reply_to")


def test_a_failed_transaction_leaves_no_file(named, clients, media_root, monkeypatch,
                                             django_capture_on_commit_callbacks):
    make_session(named.acme)

    def broken(session, phone, chat_jid):
        raise RuntimeError("the conversation lookup fell over")

    monkeypatch.setattr(conversations, "for_outgoing", broken)
    clients["alice"].raise_request_exception = False
    with django_capture_on_commit_callbacks(execute=True):
        response = post(clients["alice"], {**BASE, "type": "image", "file": image_file()}, multipart=True)
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert count(named.acme) == 0
    assert media_files(media_root) == []


# --- multipart and idempotency ---------------------------------------------------------------------------------------

def test_multipart_upload_and_idempotency_with_files(named, clients, media_root,
                                                     django_capture_on_commit_callbacks):
    make_session(named.acme)
    alice = clients["alice"]
    red, blue = png_bytes("red"), png_bytes("blue")
    with django_capture_on_commit_callbacks(execute=True):
        first = ok(post(alice, {**BASE, "type": "image", "file": upload("red.png", red), "caption": "c"},
                        key="img-1", multipart=True), 202)
    with django_capture_on_commit_callbacks(execute=True):
        again = post(alice, {**BASE, "type": "image", "file": upload("other-name.png", red), "caption": "c"},
                     key="img-1", multipart=True)
    assert ok(again, 200)["id"] == first["id"] and again["Idempotent-Replayed"] == "true"
    with django_capture_on_commit_callbacks(execute=True):
        err = error(post(alice, {**BASE, "type": "image", "file": upload("red.png", blue), "caption": "c"},
                         key="img-1", multipart=True), 409, "idempotency_conflict")
    assert err["details"] == {"message_id": first["id"]}
    assert count(named.acme) == 1
    [stored] = media_files(media_root)
    assert open(stored, "rb").read() == red
    # A multipart request may carry the non-media types too (fields arrive as strings).
    with django_capture_on_commit_callbacks(execute=True):
        location = ok(post(alice, {**BASE, "type": "location", "latitude": "1.5", "longitude": "-2.25"},
                           multipart=True), 202)
    assert (load(named.acme, location["id"]).latitude, load(named.acme, location["id"]).longitude) == (1.5, -2.25)


def test_the_openapi_schema_documents_every_field_and_multipart(named, clients):
    schema = clients["alice"].get("/api/schema/", HTTP_ACCEPT="application/json")
    if schema.status_code == 404:
        pytest.skip("no schema endpoint at /api/schema/")
    body = schema.json()
    operation = body["paths"]["/api/v1/messages"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(operation)
    fields = body["components"]["schemas"]["SendMessageRequest"]["properties"]
    assert {"session", "to", "type", "text", "media_url", "caption", "filename", "latitude", "longitude",
            "contact", "reply_to", "reaction"} <= set(fields) and "file" not in fields  # JSON carries no file
    upload = body["components"]["schemas"]["SendMessageUploadRequest"]["properties"]
    assert set(fields) | {"file"} == set(upload)
    assert "/api/v1/messages/{id}/media" in body["paths"]
