"""The neonize provider with every message type, offline: what goes to Go is decoded back into the waE2E.Message
WhatsApp would get (the Go handle replaced by a fake behind the real process-wide lock, as in
test_neonize_provider), and inbound media is downloaded through neonize's download_any on the provider's media
thread — never on the handler's — then emitted with its bytes or the reason it has none.
"""
import threading
from io import BytesIO

import pytest

from whatsapp.messaging.tests.test_message_types import MP3, MP4, PDF
from whatsapp.providers import neonize as nzmod
from whatsapp.providers.base import DeviceIdentity, EventKind, OutgoingMessage, ProviderError
from whatsapp.providers.tests.test_neonize_provider import (  # noqa: F401  (fixtures)
    PHONE,
    FakeGo,
    connect_resumed,
    dispatch,
    events,
    jid,
    locked_fake,
    make,
    message_event,
    nz,
    providers,
)

PEER = "4915112345678"


def png():
    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (4, 4), "blue").save(out, format="png")
    return out.getvalue()


class MediaGo(FakeGo):
    """FakeGo that also serves DownloadAny: `downloads` maps a directPath to bytes (or an error text)."""

    def __init__(self, nz):
        super().__init__(nz)
        self.downloads = {}
        self.download_threads = []

    def DownloadAny(self, uuid, msg, size):
        self._record("DownloadAny", bytes(msg))
        self.download_threads.append(threading.current_thread().name)
        message = self.nz.wa.Message.FromString(bytes(msg))
        media = next(getattr(message, field) for field in nzmod.MEDIA_KINDS.values() if message.HasField(field))
        found = self.downloads.get(media.directPath, "download failed with status code 403")
        ret = (self.nz.proto.DownloadReturnFunction(Binary=found) if isinstance(found, bytes)
               else self.nz.proto.DownloadReturnFunction(Error=found))
        return ret.SerializePartialToString()


@pytest.fixture
def linked(nz, make):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    fake = locked_fake(client, MediaGo(nz))
    return provider, client, fake


def sent(nz, fake):
    name, locked, (to, msg) = fake.calls[-1]
    assert name == "SendMessage" and locked
    return nz.proto.JID.FromString(to), nz.wa.Message.FromString(msg)


# --- sending -------------------------------------------------------------------------------------------------------

def test_media_types_are_uploaded_then_sent(nz, linked):
    provider, client, fake = linked
    image = png()
    provider.send(PEER, OutgoingMessage(type="image", media=image, mimetype="image/png", caption="blue"))
    assert sent(nz, fake)[1].imageMessage.caption == "blue"

    provider.send(PEER, OutgoingMessage(type="document", media=PDF, mimetype="application/pdf", filename="q3.pdf",
                                        caption="Q3"))
    doc = sent(nz, fake)[1].documentMessage
    assert (doc.fileName, doc.mimetype, doc.caption, doc.fileLength) == ("q3.pdf", "application/pdf", "Q3", len(PDF))

    provider.send(PEER, OutgoingMessage(type="audio", media=MP3, mimetype="audio/mpeg"))
    audio = sent(nz, fake)[1].audioMessage
    assert (audio.mimetype, audio.PTT, audio.URL, audio.fileLength) == ("audio/mpeg", False,
                                                                        "https://mmg.whatsapp.net/x", len(MP3))
    provider.send(PEER, OutgoingMessage(type="audio", media=b"OggS" + b"\0" * 64, mimetype="audio/ogg"))
    voice = sent(nz, fake)[1].audioMessage
    assert (voice.mimetype, voice.PTT) == ("audio/ogg; codecs=opus", True)

    provider.send(PEER, OutgoingMessage(type="video", media=MP4, mimetype="video/mp4", caption="clip"))
    video = sent(nz, fake)[1].videoMessage
    assert (video.mimetype, video.caption, video.mediaKey) == ("video/mp4", "clip", b"k")

    uploads = [(args[0], args[1]) for name, locked, args in fake.calls if name == "Upload"]
    from neonize.utils.enum import MediaType

    assert [kind for _, kind in uploads] == [MediaType.MediaImage.value, MediaType.MediaDocument.value,
                                             MediaType.MediaAudio.value, MediaType.MediaAudio.value,
                                             MediaType.MediaVideo.value]
    assert uploads[0][0] == image and uploads[2][0] == MP3
    assert all(locked for name, locked, _ in fake.calls)

    with pytest.raises(ProviderError) as wrong:
        provider.send(PEER, OutgoingMessage(type="video", media=PDF, mimetype="application/pdf"))
    assert wrong.value.code == "unsupported"
    with pytest.raises(ProviderError) as empty:
        provider.send(PEER, OutgoingMessage(type="audio", media=None, mimetype="audio/mpeg"))
    assert empty.value.code == "invalid_message"


def test_location_contact_and_replies(nz, linked):
    provider, client, fake = linked
    vcard = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nTEL;waid=442079460958:+442079460958\r\nEND:VCARD"
    provider.send(PEER, OutgoingMessage(type="contact", contact_vcard=vcard, reply_to="3A0THEIRS"))
    contact = sent(nz, fake)[1].contactMessage
    assert (contact.displayName, contact.vcard) == ("Ada Lovelace", vcard)
    # A quote of an unknown message in a 1:1 chat is the other side's.
    assert (contact.contextInfo.stanzaID, contact.contextInfo.participant) == ("3A0THEIRS",
                                                                               f"{PEER}@s.whatsapp.net")

    provider.send(PEER, OutgoingMessage(type="text", text="yes", reply_to="3EB0MINE", quoted_from_me=True,
                                 quoted_text="Shall we?"))
    reply = sent(nz, fake)[1].extendedTextMessage
    assert reply.text == "yes" and reply.contextInfo.stanzaID == "3EB0MINE"
    assert reply.contextInfo.participant == f"{PHONE}@s.whatsapp.net"
    assert reply.contextInfo.quotedMessage.conversation == "Shall we?"

    provider.send(PEER, OutgoingMessage(type="location", latitude=-6.2, longitude=106.8, text="Jakarta",
                                 reply_to="3A0THEIRS"))
    location = sent(nz, fake)[1].locationMessage
    assert (location.degreesLatitude, location.name, location.contextInfo.stanzaID) == (-6.2, "Jakarta",
                                                                                          "3A0THEIRS")

    provider.send(PEER, OutgoingMessage(type="image", media=png(), mimetype="image/png", reply_to="3A0X"))
    assert sent(nz, fake)[1].imageMessage.contextInfo.stanzaID == "3A0X"


def test_reactions_name_the_message_and_its_author(nz, linked):
    provider, client, fake = linked
    provider.send(PEER, OutgoingMessage(type="reaction", reaction="👍", reaction_to="3A0THEIRS"))
    to, message = sent(nz, fake)
    reaction = message.reactionMessage
    assert to.User == PEER and reaction.text == "👍" and reaction.senderTimestampMS > 0
    assert (reaction.key.remoteJID, reaction.key.fromMe, reaction.key.ID) == (f"{PEER}@s.whatsapp.net", False,
                                                                              "3A0THEIRS")
    provider.send(PEER, OutgoingMessage(type="reaction", reaction="", reaction_to="3EB0MINE", quoted_from_me=True))
    removal = sent(nz, fake)[1].reactionMessage
    assert (removal.text, removal.key.fromMe, removal.key.ID) == ("", True, "3EB0MINE")

    group = "1203630-99@g.us"
    provider.send(group, OutgoingMessage(type="reaction", reaction="🎉", reaction_to="3A0G",
                                  quoted_sender=f"{PEER}@s.whatsapp.net"))
    in_group = sent(nz, fake)[1].reactionMessage
    assert (in_group.key.remoteJID, in_group.key.participant) == (group, f"{PEER}@s.whatsapp.net")

    with pytest.raises(ProviderError) as missing:
        provider.send(PEER, OutgoingMessage(type="reaction", reaction="👍"))
    assert missing.value.code == "invalid_message"


# --- receiving -----------------------------------------------------------------------------------------------------

def media_event(nz, field, media, msg_id="3A1", **kwargs):
    return message_event(nz, sender=jid(nz, PEER), message=nz.wa.Message(**{field: media}), msg_id=msg_id, **kwargs)


def test_inbound_media_is_downloaded_off_the_handler_thread(nz, linked, events):
    provider, client, fake = linked
    image = png()
    fake.downloads["/v/image"] = image
    fake.downloads["/v/doc"] = PDF
    wa = nz.wa
    handler_thread = threading.current_thread().name
    dispatch(nz, client, media_event(nz, "imageMessage", wa.ImageMessage(
        directPath="/v/image", mediaKey=b"k", mimetype="image/png", caption="look", fileLength=len(image),
        contextInfo=wa.ContextInfo(stanzaID="3EB0Q")), msg_id="IMG"))
    dispatch(nz, client, media_event(nz, "documentMessage", wa.DocumentMessage(
        directPath="/v/doc", mediaKey=b"k", mimetype="application/pdf", fileName="a.pdf", fileLength=len(PDF)),
        msg_id="DOC"))
    first = events.wait_for(EventKind.MESSAGE, 1)
    second = events.wait_for(EventKind.MESSAGE, 2)
    assert (first["id"], first["type"], first["media"], first["mimetype"], first["caption"]) == (
        "IMG", "image", image, "image/png", "look")
    assert first["quoted_id"] == "3EB0Q" and first["sender_phone"] == f"+{PEER}"
    assert (second["media"], second["filename"]) == (PDF, "a.pdf")
    assert fake.download_threads == [f"neonize-media-{provider.session_key}"] * 2
    assert handler_thread not in fake.download_threads
    assert all(locked for name, locked, _ in fake.calls if name == "DownloadAny")


def test_inbound_media_that_cannot_be_kept_says_why(nz, linked, events, settings):
    provider, client, fake = linked
    settings.WHATSAPP_MEDIA_MAX_MB = 1
    wa = nz.wa
    # Declared larger than the limit: not downloaded at all.
    dispatch(nz, client, media_event(nz, "videoMessage", wa.VideoMessage(
        directPath="/v/big", mediaKey=b"k", mimetype="video/mp4", fileLength=5 * 1024 * 1024), msg_id="BIG"))
    big = events.wait_for(EventKind.MESSAGE, 1)
    assert big["media_error"].startswith("media_too_large") and "media" not in big
    # WhatsApp no longer has it.
    dispatch(nz, client, media_event(nz, "audioMessage", wa.AudioMessage(
        directPath="/v/gone", mediaKey=b"k", mimetype="audio/ogg", fileLength=10), msg_id="GONE"))
    gone = events.wait_for(EventKind.MESSAGE, 2)
    assert gone["media_error"].startswith("download_failed:") and "403" in gone["media_error"]
    # Said to be small, turned out large.
    fake.downloads["/v/liar"] = b"\0" * (1024 * 1024 + 1)
    dispatch(nz, client, media_event(nz, "stickerMessage", wa.StickerMessage(
        directPath="/v/liar", mediaKey=b"k", mimetype="image/webp", fileLength=10), msg_id="LIAR"))
    liar = events.wait_for(EventKind.MESSAGE, 3)
    assert liar["type"] == "sticker" and liar["media_error"].startswith("media_too_large")
    assert [name for name, _, _ in fake.calls].count("DownloadAny") == 2


def test_inbound_other_types_and_own_media_are_not_downloaded(nz, linked, events):
    provider, client, fake = linked
    wa = nz.wa
    dispatch(nz, client, media_event(nz, "imageMessage", wa.ImageMessage(directPath="/v/x", mediaKey=b"k"),
                                     from_me=True, msg_id="OWN"))
    dispatch(nz, client, media_event(nz, "contactMessage", wa.ContactMessage(
        displayName="Ada", vcard="BEGIN:VCARD\nFN:Ada\nEND:VCARD"), msg_id="C"))
    from neonize.proto.waCommon.WACommon_pb2 import MessageKey

    dispatch(nz, client, media_event(nz, "reactionMessage", wa.ReactionMessage(text="❤", key=MessageKey(ID="3EB0R")),
                                     msg_id="R"))
    own, contact, reaction = [events.wait_for(EventKind.MESSAGE, n) for n in (1, 2, 3)]
    assert own["from_me"] and "media" not in own and "media_error" not in own
    assert (contact["type"], contact["vcard"]) == ("contact", "BEGIN:VCARD\nFN:Ada\nEND:VCARD")
    assert (reaction["type"], reaction["reaction"], reaction["reaction_to"]) == ("reaction", "❤", "3EB0R")
    assert "DownloadAny" not in fake.names()


def test_a_stopped_session_does_not_ask_go_for_media(nz, linked, events):
    provider, client, fake = linked
    fake.downloads["/v/late"] = b"late"
    with provider._mu:
        provider._connected = False  # the session dropped before the download thread got to it
    dispatch(nz, client, media_event(nz, "imageMessage", nz.wa.ImageMessage(
        directPath="/v/late", mediaKey=b"k", fileLength=4), msg_id="LATE"))
    late = events.wait_for(EventKind.MESSAGE, 1)
    assert late["media_error"].startswith("download_failed: the session stopped")
    assert "DownloadAny" not in fake.names()
