"""The neonize provider, offline and honest.

- Handlers are driven with neonize's own event objects through neonize's own dispatch: protobufs serialized
  with SerializePartialToString and handed to `client.event.execute(...)` (what Go's callback calls), QR codes
  through `client.event._qr(...)`, login outcomes through the ctypes-facing `_NewClient__onLoginStatus`.
- Calls into Go are captured by replacing `client._NewClient__client` with a fake behind the same
  `_LockedLibrary` the real Go handle sits behind; the fake checks that the process-wide lock is held.
- The supervisor runs for real: against the real Go library where that works offline (the dial error through a
  proxy on a closed local port, a garbage store, a store without the device), and against a scripted fake
  `Neonize()` that calls back through the real ctypes trampolines where a WhatsApp server would be needed.

neonize is imported only inside fixtures (never at collection), and its logging side effects are undone.
No database. The whole file takes a few seconds.
"""
import ctypes
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from whatsapp.providers import neonize as nzmod
from whatsapp.providers.base import DeviceIdentity, EventKind, OutgoingMessage, ProviderError, ProviderSettings

FAST = ProviderSettings(max_reconnect_attempts=3, reconnect_delay_ms=10, keepalive_interval_ms=30000,
                        connection_timeout_ms=60000, max_qr_attempts=3)
PHONE = "15551234567"


# --- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nz():
    return nzmod._nz()


class Events:
    """The provider's emit: collects events, lets a test wait for one."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def kinds(self):
        with self.cond:
            return [e.kind for e in self.items]

    def of(self, kind):
        with self.cond:
            return [e.data for e in self.items if e.kind == kind]

    def wait_for(self, kind, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(e.kind == kind for e in self.items) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"no {kind} event (got {[e.kind for e in self.items]})"
                self.cond.wait(left)
            return [e.data for e in self.items if e.kind == kind][count - 1]


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def providers():
    made = []
    yield made
    for provider in made:
        provider.stop()


@pytest.fixture
def make(tmp_path, events, providers, nz):
    def make(key="t_acme:1", *, settings=FAST, identity=None, cls=nzmod.NeonizeProvider, **kwargs):
        provider = cls(key, emit=events, settings=settings, store_dir=str(tmp_path / "stores"), identity=identity,
                       **kwargs)
        providers.append(provider)
        return provider

    return make


# --- a fake Go library ------------------------------------------------------------------------------------------

class FakeGo:
    """Records calls into "Go" and answers like it; every call must arrive with the process-wide lock held."""

    def __init__(self, nz):
        self.nz = nz
        self.calls = []
        self.stopped = threading.Event()
        self.send_error = ""
        self.neonize_script = None
        self.block_until_stop = True

    def _record(self, name, *args):
        self.calls.append((name, nzmod._GO_LOCK.locked(), args))

    def names(self):
        return [name for name, _, _ in self.calls]

    def SendMessage(self, uuid, to, tolen, msg, msglen):
        self._record("SendMessage", to, msg)
        ret = self.nz.proto.SendMessageReturnFunction(Error=self.send_error) if self.send_error else \
            self.nz.proto.SendMessageReturnFunction(SendResponse=self.nz.proto.SendResponse(ID="3EB0C0FFEE",
                                                                                            Timestamp=1))
        return ret.SerializePartialToString()

    def PairPhone(self, uuid, payload, size):
        self._record("PairPhone", payload)
        return self.nz.proto.PairPhoneReturnFunction(Code="ABCD-EFGH").SerializePartialToString()

    def Logout(self, uuid):
        self._record("Logout")
        return b""

    def Stop(self, uuid):
        self._record("Stop")
        self.stopped.set()

    def Neonize(self, name, uuid, jid, jidlen, new_device, level, qr_cb, login_cb, event_cb, *rest):
        """Stands in for Go's blocking Neonize(): plays a script through the real ctypes callbacks, then blocks
        until Stop, like Go."""
        self._record("Neonize", name, jid, new_device)
        self.stopped.clear()  # a client may connect again after a stop
        if self.neonize_script is not None:
            self.neonize_script(uuid, qr_cb, login_cb, event_cb)
        if self.block_until_stop:
            self.stopped.wait(10)
        return b""

    def Upload(self, uuid, data, size, media_type):
        self._record("Upload", bytes(data), media_type)
        response = self.nz.proto.UploadResponse(url="https://mmg.whatsapp.net/x", DirectPath="/x", Handle="",
                                                MediaKey=b"k", FileEncSHA256=b"e", FileSHA256=b"s",
                                                FileLength=size)
        return self.nz.proto.UploadReturnFunction(UploadResponse=response).SerializePartialToString()


def locked_fake(client, fake):
    client._NewClient__client = nzmod._LockedLibrary(fake, client)
    return fake


def attach(provider, pairing_phone=None):
    """What the supervisor does before connecting, without connecting: a run, a client with its handlers."""
    run = nzmod._Run(pairing_phone)
    run.thread = threading.current_thread()
    provider._run = run
    client = provider._new_client(run)
    client.new_attempt()
    run.client = client
    return run, client


def dispatch(nz, client, event):
    """Deliver a neonize event exactly as Go does: serialized bytes at an address, through event.execute."""
    data = event.SerializePartialToString()
    buf = ctypes.create_string_buffer(data, len(data) or 1)
    client.event.execute(client.uuid, ctypes.addressof(buf), len(data), nz.EVENT_TO_INT[type(event)])


def login_status(client, text):
    buf = ctypes.create_string_buffer(text.encode())
    client._NewClient__onLoginStatus(0, ctypes.addressof(buf))


def jid(nz, user, server="s.whatsapp.net", device=0):
    return nz.proto.JID(User=user, Server=server, Device=device, RawAgent=0, Integrator=0, IsEmpty=False)


def device_event(nz, user=PHONE, device=7, push_name="Alice"):
    return nz.proto.Device(JID=jid(nz, user, device=device), PushName=push_name, Platform="", BussinessName="",
                           Initialized=True)


def connect_resumed(nz, provider):
    run, client = attach(provider)
    dispatch(nz, client, device_event(nz))
    dispatch(nz, client, nz.ev.ConnectedEv(status=True))
    return run, client


def message_event(nz, *, sender, chat=None, text="hi", sender_alt=None, message=None, from_me=False,
                  is_group=False, msg_id="3A1"):
    source = nz.proto.MessageSource(Chat=chat or sender, Sender=sender, IsFromMe=from_me, IsGroup=is_group)
    if sender_alt is not None:
        source.SenderAlt.CopyFrom(sender_alt)
    return nz.ev.MessageEv(Info=nz.proto.MessageInfo(MessageSource=source, ID=msg_id, Timestamp=1760000000,
                                                     Pushname="Bob", Type="text"),
                           Message=message if message is not None else nz.wa.Message(conversation=text))


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- importing --------------------------------------------------------------------------------------------------

def test_importing_leaves_neonize_and_logging_alone():
    """The module imports without neonize; loading neonize does not reconfigure the root logger."""
    code = (
        "import logging, sys\n"
        "from whatsapp.providers import neonize as m\n"
        "assert 'neonize' not in sys.modules, 'imported neonize eagerly'\n"
        "root = logging.getLogger(); before = (root.level, list(root.handlers))\n"
        "m._nz()\n"
        "assert 'neonize' in sys.modules\n"
        "assert (root.level, list(root.handlers)) == before, (root.level, root.handlers)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_store_path_is_one_safe_file_per_session(tmp_path):
    a = nzmod.store_path(str(tmp_path), "t_acme:12")
    assert a == str(tmp_path / "t_acme=3A12.sqlite3")
    assert nzmod.store_path(str(tmp_path), "t_acme_12") != a
    assert os.path.dirname(nzmod.store_path(str(tmp_path), "../x")) == str(tmp_path)
    assert not os.path.basename(nzmod.store_path(str(tmp_path), ".hidden")).startswith(".")


# --- pairing: QR codes, pair success, pairing codes -------------------------------------------------------------

def test_qr_codes_rotate_then_expire_and_the_client_is_stopped_only_after_gos_qr_loop(nz, make, events):
    provider = make()
    run, client = attach(provider)
    fake = locked_fake(client, FakeGo(nz))
    client._attempt.started = True  # as if Neonize() had been called

    for n in range(4):
        client.event._qr(client, f"2@ref{n},key".encode())

    qrs = events.of(EventKind.QR)
    assert [(q["attempt"], q["expires_in"], q["max_attempts"]) for q in qrs] == [(1, 60, 3), (2, 20, 3), (3, 20, 3)]
    assert qrs[0]["code"] == "2@ref0,key"
    assert events.of(EventKind.QR_EXPIRED) == [{"attempts": 3, "message": "QR expired, restart"}]
    assert ("terminal", client._attempt) in list(run.q.queue)

    # Go is still in its QR loop: stopping now would abort the process when the loop ends.
    nzmod._stop_client(client)
    assert "Stop" not in fake.names()
    client.event._qr(client, b"2@ref4,key")  # Go's remaining codes are not shown
    assert len(events.of(EventKind.QR)) == 3

    login_status(client, "timeout")  # whatsmeow ran out of codes: the loop is over
    assert fake.stopped.wait(3), "the pending stop was not carried out"
    assert fake.calls[-1][:2] == ("Stop", True)
    assert len(events.of(EventKind.QR_EXPIRED)) == 1


def test_pair_success_then_connected(nz, make, events):
    provider = make()
    run, client = attach(provider)
    client.event._qr(client, b"2@ref,key")

    login_status(client, "success")
    dispatch(nz, client, device_event(nz, device=7, push_name="Alice"))  # Go sends the device first
    dispatch(nz, client, nz.ev.PairStatusEv(ID=jid(nz, PHONE, device=7), Status=nz.proto.PairStatus.SUCCESS,
                                            BusinessName="", Platform="android"))
    dispatch(nz, client, nz.ev.ConnectedEv(status=True))

    assert events.kinds() == [EventKind.QR, EventKind.PAIRED, EventKind.CONNECTED]
    paired = events.of(EventKind.PAIRED)[0]
    assert (paired["jid_user"], paired["jid_device"], paired["phone"]) == (PHONE, 7, f"+{PHONE}")
    assert events.of(EventKind.CONNECTED)[0] == {"phone": f"+{PHONE}", "push_name": "Alice", "jid_user": PHONE,
                                                 "jid_device": 7}
    assert provider.identity == DeviceIdentity(PHONE, 7)
    assert provider.is_connected


def test_pair_failure_is_a_fatal_error(nz, make, events):
    provider = make()
    run, client = attach(provider)
    dispatch(nz, client, nz.ev.PairStatusEv(ID=jid(nz, ""), Status=nz.proto.PairStatus.ERROR, BusinessName="",
                                            Platform="", Error="bad signature"))
    error = events.wait_for(EventKind.ERROR)
    assert error["code"] == "pair_failed" and error["fatal"] and "bad signature" in error["message"]
    assert provider.identity is None


def test_pairing_code_is_asked_for_once_the_websocket_is_up(nz, make, events):
    provider = make()
    run, client = attach(provider, pairing_phone=PHONE)
    fake = locked_fake(client, FakeGo(nz))

    provider._maybe_request_pair_code(run, client, client._attempt)  # too early: no QR yet, Go would say nil
    assert "PairPhone" not in fake.names()

    client.event._qr(client, b"2@ref,key")  # the first QR means the pairing websocket is up
    assert events.of(EventKind.QR) == []  # a pairing-code session shows no QR
    assert ("qr",) in list(run.q.queue)
    provider._maybe_request_pair_code(run, client, client._attempt)  # what the supervisor does on "qr"

    code = events.wait_for(EventKind.PAIR_CODE)
    assert code["code"] == "ABCD-EFGH" and code["phone"] == f"+{PHONE}" and 0 < code["expires_in"] <= 160
    name, locked, (payload,) = fake.calls[-1]
    assert name == "PairPhone" and locked
    assert nz.proto.PairPhoneParams.FromString(payload).phone == PHONE
    provider._maybe_request_pair_code(run, client, client._attempt)  # once per attempt and number
    assert fake.names().count("PairPhone") == 1


def test_pairing_code_input_is_checked(make):
    provider = make()
    with pytest.raises(ProviderError) as bad:
        provider.request_pairing_code("12ab")
    assert bad.value.code == "invalid_phone"
    linked = make("t_acme:2", identity=DeviceIdentity(PHONE, 7))
    with pytest.raises(ProviderError) as already:
        linked.request_pairing_code(PHONE)
    assert already.value.code == "already_linked"


# --- connection events ------------------------------------------------------------------------------------------

def test_resumed_session_connects_with_phone_and_push_name(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    assert client.jid.User == PHONE and client.jid.Device == 7 and client.jid.Server == "s.whatsapp.net"
    assert not client.new_device
    assert events.kinds() == [EventKind.CONNECTED]  # no PAIRED for a resumed device
    assert events.of(EventKind.CONNECTED)[0]["push_name"] == "Alice"
    assert provider.is_connected


def test_disconnect_is_announced_with_its_retry_and_an_in_place_reconnect_clears_it(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7), settings=ProviderSettings(reconnect_delay_ms=2000))
    run, client = connect_resumed(nz, provider)

    dispatch(nz, client, nz.ev.DisconnectedEv(status=True))
    dispatch(nz, client, nz.ev.DisconnectedEv(status=True))  # repeats are not news
    (lost,) = events.of(EventKind.DISCONNECTED)
    assert lost["will_retry"] and lost["attempt"] == 1 and 1.6 <= lost["retry_in"] <= 2.4
    assert not provider.is_connected and run.lost_at is not None

    dispatch(nz, client, nz.ev.ConnectedEv(status=True))  # whatsmeow got it back by itself
    assert events.kinds()[-1] == EventKind.CONNECTED and provider.is_connected
    assert run.lost_at is None and run.retry == 0


def test_keepalive_timeout_waits_two_intervals_and_restore_reconnects(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7),
                    settings=ProviderSettings(reconnect_delay_ms=10, keepalive_interval_ms=30000))
    run, client = connect_resumed(nz, provider)
    dispatch(nz, client, nz.ev.KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=1760000000))
    assert events.of(EventKind.DISCONNECTED)[0]["retry_in"] == 60.0
    dispatch(nz, client, nz.ev.KeepAliveRestoredEv())
    assert events.kinds() == [EventKind.CONNECTED, EventKind.DISCONNECTED, EventKind.CONNECTED]


def test_stream_error_and_connect_failure_count_as_disconnects(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    dispatch(nz, client, nz.ev.StreamErrorEv(Code="999"))
    assert "error 999" in events.of(EventKind.DISCONNECTED)[0]["reason"]
    dispatch(nz, client, nz.ev.ConnectedEv(status=True))
    dispatch(nz, client, nz.ev.ConnectFailureEv(Reason=nz.proto.ConnectFailureReason.SERVICE_UNAVAILABLE,
                                                Message="try later"))
    assert "service_unavailable" in events.of(EventKind.DISCONNECTED)[1]["reason"]


def test_logged_out_from_the_phone(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    dispatch(nz, client, nz.ev.LoggedOutEv(OnConnect=False, Reason=nz.proto.ConnectFailureReason.LOGGED_OUT))
    dispatch(nz, client, nz.ev.LoggedOutEv(OnConnect=False, Reason=nz.proto.ConnectFailureReason.LOGGED_OUT))
    assert events.of(EventKind.LOGGED_OUT) == [{"reason": "logged out from the phone"}]
    assert provider.identity is None and not provider.is_connected
    assert run.terminal == "logged_out" and run.delete_store  # whatsmeow dropped the device; the file goes too
    assert ("terminal", client._attempt) in list(run.q.queue)


@pytest.mark.parametrize("event, code", [("ban", "banned"), ("outdated", "client_outdated")])
def test_bans_and_outdated_clients_are_fatal_errors(nz, make, events, event, code):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    ev = (nz.ev.TemporaryBanEv(Code=nz.proto.TemporaryBan.SENT_TOO_MANY_SAME_MESSAGE, Expire=3600)
          if event == "ban" else nz.ev.ClientOutdatedEv())
    dispatch(nz, client, ev)
    (error,) = events.of(EventKind.ERROR)
    assert error["code"] == code and error["fatal"]
    assert run.terminal == "fatal" and not provider.is_connected


def test_stream_replaced_logs_out_but_keeps_the_store(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    dispatch(nz, client, nz.ev.StreamReplacedEv())
    (logged_out,) = events.of(EventKind.LOGGED_OUT)
    assert "replaced" in logged_out["reason"] and logged_out["store_kept"]
    assert not run.delete_store and provider.identity == DeviceIdentity(PHONE, 7)


# --- messages and receipts --------------------------------------------------------------------------------------

def test_inbound_text_from_a_phone_number(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    dispatch(nz, client, message_event(nz, sender=jid(nz, "4915112345678", device=3), text="hello"))
    (msg,) = events.of(EventKind.MESSAGE)
    assert msg == {"id": "3A1", "chat": "4915112345678@s.whatsapp.net", "sender": "4915112345678@s.whatsapp.net",
                   "sender_phone": "+4915112345678", "sender_alt": None, "from_me": False, "is_group": False,
                   "timestamp": 1760000000, "push_name": "Bob", "type": "text", "text": "hello"}


def test_inbound_from_a_lid_sender(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    lid = jid(nz, "123456789012345", server="lid")
    dispatch(nz, client, message_event(nz, sender=lid, sender_alt=jid(nz, "4915112345678"), msg_id="A"))
    dispatch(nz, client, message_event(nz, sender=lid, msg_id="B"))
    with_alt, without_alt = events.of(EventKind.MESSAGE)
    assert with_alt["sender"] == "123456789012345@lid"
    assert with_alt["sender_phone"] == "+4915112345678" and with_alt["sender_alt"] == "4915112345678@s.whatsapp.net"
    assert without_alt["sender_phone"] is None and without_alt["sender_alt"] is None


def test_inbound_image_in_a_group_and_own_messages(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    image = nz.wa.Message(imageMessage=nz.wa.ImageMessage(caption="look", mimetype="image/jpeg"))
    dispatch(nz, client, message_event(nz, sender=jid(nz, "4915112345678"), chat=jid(nz, "1203630-99", "g.us"),
                                       is_group=True, message=image))
    dispatch(nz, client, message_event(nz, sender=jid(nz, PHONE, device=7), from_me=True, text="sent from phone"))
    group, own = events.of(EventKind.MESSAGE)
    assert (group["type"], group["text"], group["caption"], group["mimetype"]) == ("image", "look", "look",
                                                                                    "image/jpeg")
    assert group["chat"] == "1203630-99@g.us" and group["is_group"]
    assert own["from_me"] and own["sender"] == f"{PHONE}@s.whatsapp.net"


def test_describe_message_types(nz):
    wa = nz.wa
    assert nzmod.describe_message(wa.Message(extendedTextMessage=wa.ExtendedTextMessage(
        text="re", contextInfo=wa.ContextInfo(stanzaID="Q1")))) == {"type": "text", "text": "re", "quoted_id": "Q1"}
    doc = nzmod.describe_message(wa.Message(documentWithCaptionMessage=wa.FutureProofMessage(
        message=wa.Message(documentMessage=wa.DocumentMessage(fileName="a.pdf", caption="c",
                                                              mimetype="application/pdf")))))
    assert (doc["type"], doc["filename"], doc["text"]) == ("document", "a.pdf", "c")
    assert nzmod.describe_message(wa.Message(locationMessage=wa.LocationMessage(
        degreesLatitude=1.5, degreesLongitude=2.5)))["type"] == "location"
    assert nzmod.describe_message(wa.Message())["type"] == "unknown"


def test_receipts(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    other = jid(nz, "4915112345678")
    source = nz.proto.MessageSource(Chat=other, Sender=other, IsFromMe=False, IsGroup=False)
    for kind in ("DELIVERED", "READ", "READ_SELF"):
        dispatch(nz, client, nz.ev.ReceiptEv(MessageSource=source, MessageIDs=["M1", "M2"], Timestamp=1760000001,
                                             Type=getattr(nz.proto.Receipt, kind)))
    delivered, read = events.of(EventKind.RECEIPT)  # READ_SELF (our other device read it) is not a status
    assert delivered == {"ids": ["M1", "M2"], "chat": "4915112345678@s.whatsapp.net",
                         "sender": "4915112345678@s.whatsapp.net", "status": "delivered", "timestamp": 1760000001}
    assert read["status"] == "read"


# --- sending ----------------------------------------------------------------------------------------------------

def test_send_text_goes_to_go_under_the_lock_and_returns_the_id(nz, make):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    fake = locked_fake(client, FakeGo(nz))

    assert provider.send("+49 151 1234-5678", OutgoingMessage(type="text", text="hello")) == "3EB0C0FFEE"
    name, locked, (to, msg) = fake.calls[-1]
    assert name == "SendMessage" and locked
    assert nz.proto.JID.FromString(to).User == "4915112345678"
    assert nz.wa.Message.FromString(msg).conversation == "hello"

    provider.send("1203630-99@g.us", OutgoingMessage(type="location", latitude=1.5, longitude=2.5))
    to, msg = fake.calls[-1][2]
    assert nz.proto.JID.FromString(to).Server == "g.us"
    assert nz.wa.Message.FromString(msg).locationMessage.degreesLongitude == 2.5


def test_send_image_uploads_then_sends(nz, make):
    from io import BytesIO

    from PIL import Image

    png = BytesIO()
    Image.new("RGB", (4, 4), "red").save(png, format="png")
    provider = make(identity=DeviceIdentity(PHONE, 7))
    run, client = connect_resumed(nz, provider)
    fake = locked_fake(client, FakeGo(nz))
    assert provider.send(PHONE, OutgoingMessage(type="image", media=png.getvalue(), caption="red")) == "3EB0C0FFEE"
    assert [(name, locked) for name, locked, _ in fake.calls] == [("Upload", True), ("SendMessage", True)]
    sent = nz.wa.Message.FromString(fake.calls[-1][2][1]).imageMessage
    assert sent.caption == "red" and sent.mimetype == "image/png" and sent.URL == "https://mmg.whatsapp.net/x"


def test_send_errors(nz, make):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    with pytest.raises(ProviderError) as not_connected:
        provider.send(PHONE, OutgoingMessage(type="text", text="x"))
    assert not_connected.value.code == "not_connected"

    run, client = connect_resumed(nz, provider)
    fake = locked_fake(client, FakeGo(nz))
    for to, message, code in [
        ("not a number", OutgoingMessage(type="text", text="x"), "invalid_recipient"),
        (PHONE, OutgoingMessage(type="video", media=b"x"), "unsupported"),
        (PHONE, OutgoingMessage(type="telegram"), "unsupported_type"),
        (PHONE, OutgoingMessage(type="text", text=""), "invalid_message"),
    ]:
        with pytest.raises(ProviderError) as bad:
            provider.send(to, message)
        assert bad.value.code == code
    fake.send_error = "server returned error 479"
    with pytest.raises(ProviderError) as failed:
        provider.send(PHONE, OutgoingMessage(type="text", text="x"))
    assert failed.value.code == "send_failed" and "479" in str(failed.value)


def test_logout_unlinks_under_the_lock_and_deletes_the_store(nz, make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    Path(provider.store_file).write_bytes(b"")
    run, client = connect_resumed(nz, provider)
    fake = locked_fake(client, FakeGo(nz))
    provider.logout()
    assert ("Logout", True) == fake.calls[0][:2]
    assert events.of(EventKind.LOGGED_OUT) == [{"reason": "logged out by user", "unlinked": True}]
    assert not os.path.exists(provider.store_file) and provider.identity is None and not provider.is_connected


def test_logout_without_a_connection_forgets_the_device(make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    Path(provider.store_file).write_bytes(b"garbage")
    provider.logout()
    assert events.of(EventKind.LOGGED_OUT) == [{"reason": "logged out by user", "unlinked": False}]
    assert not os.path.exists(provider.store_file) and provider.identity is None


# --- the supervisor, against the real Go library ----------------------------------------------------------------

def test_unreachable_whatsapp_retries_with_backoff_then_gives_up(make, events, closed_port, monkeypatch):
    provider = make(proxy_address=f"http://127.0.0.1:{closed_port}",
                    settings=ProviderSettings(max_reconnect_attempts=4, reconnect_delay_ms=10))
    built = []
    new_client = provider._new_client
    monkeypatch.setattr(provider, "_new_client", lambda run: built.append(1) or new_client(run))
    provider.start()
    error = events.wait_for(EventKind.ERROR)

    retries = events.of(EventKind.DISCONNECTED)
    assert [r["attempt"] for r in retries] == [1, 2, 3, 4]
    assert all(r["reason"] == "cannot reach WhatsApp" and r["will_retry"] for r in retries)
    assert "failed to dial whatsapp web websocket" in retries[0]["detail"]
    for r in retries:  # reconnect_delay_ms * 2^(attempt-1), ±20 % jitter
        assert 0.008 * 2 ** (r["attempt"] - 1) <= r["retry_in"] <= 0.012 * 2 ** (r["attempt"] - 1)
    assert error["code"] == "unreachable" and error["fatal"] and "5 attempts" in error["message"]
    assert len(built) == 2  # a fresh client after 3 failures on one
    assert events.kinds()[-1] == EventKind.ERROR
    # whatsmeow made its store in the session's own sqlite file
    with sqlite3.connect(provider.store_file) as con:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "whatsmeow_device" in tables


def test_stop_during_the_retry_loop_returns_at_once(make, events, closed_port):
    provider = make(proxy_address=f"http://127.0.0.1:{closed_port}",
                    settings=ProviderSettings(max_reconnect_attempts=5, reconnect_delay_ms=30000))
    provider.start()
    events.wait_for(EventKind.DISCONNECTED)
    thread = provider._run.thread
    began = time.monotonic()
    provider.stop()
    assert time.monotonic() - began < 1.0
    assert not thread.is_alive()
    count = len(events.items)
    time.sleep(0.2)
    assert len(events.items) == count


def test_garbage_store_is_a_fatal_error_not_a_crash(make, events):
    provider = make(identity=DeviceIdentity(PHONE, 7))
    os.makedirs(os.path.dirname(provider.store_file), exist_ok=True)
    Path(provider.store_file).write_bytes(b"\x00\x13this is not sqlite" * 50)
    provider.start()
    error = events.wait_for(EventKind.ERROR)
    assert error["code"] == "store_corrupt" and error["fatal"] and "link again" in error["message"]
    provider._run.thread.join(5)
    assert not provider.is_connected


def test_a_busy_store_is_retried_not_called_corrupt(make, events, monkeypatch):
    monkeypatch.setattr(nzmod, "STORE_READ_TIMEOUT_S", 0.05)
    provider = make(identity=DeviceIdentity(PHONE, 7),
                    settings=ProviderSettings(max_reconnect_attempts=1, reconnect_delay_ms=300))
    os.makedirs(os.path.dirname(provider.store_file), exist_ok=True)
    holder = sqlite3.connect(provider.store_file, isolation_level=None)
    holder.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        provider.start()
        busy = events.wait_for(EventKind.DISCONNECTED)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert busy["reason"].startswith("could not read the device store") and busy["will_retry"]
    assert events.wait_for(EventKind.LOGGED_OUT) == {"reason": "device not linked"}  # readable now: no device
    assert events.of(EventKind.ERROR) == []


def test_store_error_reported_by_go_is_store_corrupt(make, events):
    provider = make()
    run = nzmod._Run(None)
    outcome = provider._attempt_returned(run, "failed to upgrade database: failed to check if foreign keys are "
                                              "enabled: file is not a database")
    assert outcome == ("terminal", "store", False)
    assert events.of(EventKind.ERROR)[0]["code"] == "store_corrupt"


def test_resuming_a_device_missing_from_the_store_logs_out_instead_of_crashing_go(make, events, closed_port):
    """Go dereferences nil (and aborts the process) when asked to resume a device its store lacks."""
    first = make("t_acme:1", proxy_address=f"http://127.0.0.1:{closed_port}",
                 settings=ProviderSettings(max_reconnect_attempts=0))
    first.start()  # creates the store's tables; no device in it
    events.wait_for(EventKind.ERROR)
    first._run.thread.join(5)
    provider = make("t_acme:1", identity=DeviceIdentity(PHONE, 7))
    provider.start()
    assert events.wait_for(EventKind.LOGGED_OUT) == {"reason": "device not linked"}
    assert provider.identity is None


def test_stop_is_safe_before_start_twice_and_right_after_start(make, closed_port):
    provider = make(proxy_address=f"http://127.0.0.1:{closed_port}")
    provider.stop()
    provider.stop()
    provider.start()
    with pytest.raises(ProviderError) as twice:
        provider.start()
    assert twice.value.code == "already_started"
    began = time.monotonic()
    provider.stop()
    assert time.monotonic() - began < 2.0
    provider.start()  # a stopped provider can start again
    provider.stop()


# --- the supervisor, against a scripted Go ----------------------------------------------------------------------

class ScriptedProvider(nzmod.NeonizeProvider):
    """Its clients talk to a FakeGo whose Neonize() plays `script` through the real ctypes callbacks."""

    script = None

    def _new_client(self, run):
        client = super()._new_client(run)
        self.fake = locked_fake(client, FakeGo(nzmod._nz()))
        self.fake.neonize_script = self.script
        return client


def test_supervisor_end_to_end_pairing_through_the_ctypes_callbacks(nz, make, events):
    def script(uuid, qr_cb, login_cb, event_cb):
        assert nzmod._GO_LOCK.locked()  # held while "Go" registers the client
        code = ctypes.create_string_buffer(b"2@first,key")
        qr_cb(uuid, ctypes.addressof(code))
        assert not nzmod._GO_LOCK.locked()  # released at Go's first callback
        status = ctypes.create_string_buffer(b"success")
        login_cb(uuid, ctypes.addressof(status))
        for event in (device_event(nz), nz.ev.PairStatusEv(ID=jid(nz, PHONE, device=7), BusinessName="",
                                                           Platform="android",
                                                           Status=nz.proto.PairStatus.SUCCESS),
                      nz.ev.ConnectedEv(status=True)):
            data = event.SerializePartialToString()
            buf = ctypes.create_string_buffer(data, len(data) or 1)
            event_cb(uuid, ctypes.addressof(buf), len(data), nz.EVENT_TO_INT[type(event)])

    ScriptedProvider.script = staticmethod(script)
    provider = make(cls=ScriptedProvider)
    provider.start()
    events.wait_for(EventKind.CONNECTED)
    assert events.kinds() == [EventKind.QR, EventKind.PAIRED, EventKind.CONNECTED]
    assert provider.is_connected and provider.identity == DeviceIdentity(PHONE, 7)
    name, _, (store, jid_bytes, new_device) = provider.fake.calls[0]
    assert name == "Neonize" and store.decode() == provider.store_file and new_device == 1 and jid_bytes == b""

    provider.stop()
    assert provider.fake.stopped.is_set() and ("Stop", True) in [c[:2] for c in provider.fake.calls]
    assert not provider.is_connected


def test_supervisor_stop_requested_during_the_qr_loop_waits_for_its_end(nz, make, events, monkeypatch):
    monkeypatch.setattr(nzmod, "RETURN_WAIT_S", 0.5)
    loop_over = threading.Event()

    def script(uuid, qr_cb, login_cb, event_cb):
        for n in range(4):
            code = ctypes.create_string_buffer(f"2@ref{n},key".encode())
            qr_cb(uuid, ctypes.addressof(code))
        loop_over.wait(5)  # whatsmeow still has codes left
        status = ctypes.create_string_buffer(b"timeout")
        login_cb(uuid, ctypes.addressof(status))

    ScriptedProvider.script = staticmethod(script)
    provider = make(cls=ScriptedProvider)
    provider.start()
    events.wait_for(EventKind.QR_EXPIRED)
    provider._run.thread.join(3)  # the supervisor is done; the stop waits for Go's QR loop
    assert "Stop" not in provider.fake.names()
    loop_over.set()
    assert provider.fake.stopped.wait(3)
    assert len(events.of(EventKind.QR)) == 3 and len(events.of(EventKind.QR_EXPIRED)) == 1


def test_a_silent_dial_is_reported_and_only_stopped_once_go_returns(nz, make, events):
    """Go's Stop waits for an in-flight dial (a minute against a silent peer) with the process-wide lock held:
    the provider says WhatsApp is not answering, and stops the client only when the dial is over."""
    dial_over = threading.Event()

    def script(uuid, qr_cb, login_cb, event_cb):
        dial_over.wait(5)  # no callback: the websocket dial hangs

    ScriptedProvider.script = staticmethod(script)
    provider = make(cls=ScriptedProvider, settings=ProviderSettings(connection_timeout_ms=100))
    provider.start()
    silent = events.wait_for(EventKind.DISCONNECTED)
    assert silent["reason"] == "WhatsApp is not answering" and silent["will_retry"]
    provider.fake.block_until_stop = False
    began = time.monotonic()
    provider.stop()
    assert time.monotonic() - began < 1.0
    assert "Stop" not in provider.fake.names() and not nzmod._GO_LOCK.locked()
    dial_over.set()
    assert provider.fake.stopped.wait(3)


def test_lost_connection_not_restored_in_place_reconnects_with_a_new_connect(nz, make, events):
    connects = []

    def script(uuid, qr_cb, login_cb, event_cb):
        connects.append(uuid)
        for event in ([device_event(nz), nz.ev.ConnectedEv(status=True)]
                      + ([nz.ev.DisconnectedEv(status=True)] if len(connects) == 1 else [])):
            data = event.SerializePartialToString()
            buf = ctypes.create_string_buffer(data, len(data) or 1)
            event_cb(uuid, ctypes.addressof(buf), len(data), nz.EVENT_TO_INT[type(event)])

    ScriptedProvider.script = staticmethod(script)
    provider = make(cls=ScriptedProvider, identity=DeviceIdentity(PHONE, 7),
                    settings=ProviderSettings(max_reconnect_attempts=3, reconnect_delay_ms=50))
    Path(provider.store_file).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(provider.store_file) as con:  # a store that holds the device
        con.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY)")
        con.execute("INSERT INTO whatsmeow_device VALUES (?)", (f"{PHONE}:7@s.whatsapp.net",))
    provider.start()
    events.wait_for(EventKind.CONNECTED, count=2)
    time.sleep(0.1)
    assert events.kinds() == [EventKind.CONNECTED, EventKind.DISCONNECTED, EventKind.CONNECTED]
    lost = events.of(EventKind.DISCONNECTED)[0]
    assert lost["attempt"] == 1 and lost["will_retry"]
    assert len(connects) == 2 and provider.is_connected
    assert provider.fake.names().count("Stop") == 1  # the first connection was stopped before the second
