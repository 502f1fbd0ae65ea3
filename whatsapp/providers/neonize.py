"""The real WhatsApp provider: whatsmeow (Go) through neonize 0.5.2.

Only the session host imports this module, and neonize itself is imported lazily (`_nz()`) the first time a
client is built, so importing this module costs nothing and never configures logging. Pinned to neonize==0.5.2:
the seams below use private names of that version (see ../../../shared/NEONIZE.md).

Design, from what was measured and read in neonize 0.5.2 / its Go source:
- Store: one sqlite file per session, `store_path(store_dir, key)`. A crash or a damaged file touches one
  session only, files survive restarts and go into backups; clients first touching one shared file fail.
- One process-wide lock (`_GO_LOCK`) around every call into the Go library. neonize keeps its clients in
  unsynchronised Go maps: concurrent calls abort the whole process. The lock sits in `_LockedLibrary`, which
  replaces each client's Go handle, so every call neonize makes on our behalf (Stop, SendMessage, Upload,
  PairPhone, Logout, ...) goes through it. `Neonize()` (connect) blocks for the whole session, so it holds the
  lock only while Go registers the client: until Go first calls back (QR, login status, an event), the call
  returns, or CONNECT_START_GRACE_S passes (a fresh store plus a dial error takes ~8 ms here).
- Each connect attempt runs `client.connect()` on its own daemon thread; a supervisor thread per start() watches
  it (queue + timers): backoff, reconnects, QR limits, pairing codes and teardown happen there, never on a thread
  that a caller or a Go callback waits on. Handlers only translate an event and emit (or enqueue for the
  supervisor); they never call into Go.
- Go's Stop() waits for an in-flight websocket dial (up to ~60 s against a silent peer), and it would do so
  holding the process-wide lock. So a client is only stopped once Go has shown progress (a callback) or the
  connect call has returned; a stop requested earlier is carried out at that moment.
- Resuming with `jid=` a device that is not in the store dereferences nil in Go and aborts the process
  (measured), so the store is read with sqlite3 before every start: garbage → ERROR store_corrupt, device
  missing → LOGGED_OUT "device not linked" (as the simulator does).
- neonize keys its Go-side client by `jid.User` when resuming, so two sessions linked to one phone would share a
  key; every client here gets its own key (`<file stem>#<n>`).
- While a new device shows QR codes, Go runs a QR loop that ends only when whatsmeow runs out of codes (~160 s
  after the first) or pairing ends; right after it Go reads its client map (`FetchMe`) without a nil check. A
  client stopped before that would abort the process, so a stop requested during the QR loop waits for its end
  (QR_EXPIRED is emitted at our own limit; Go's last codes are just not shown). After a QR timeout `FetchMe`
  waits forever for a device id: that connect never returns, and costs one parked thread until the process ends.
- `Client.connect()` calls Go's `Neonize()` on the calling thread (our daemon connect thread) instead of
  neonize's extra non-daemon thread, which would keep the interpreter from exiting after such a QR timeout.
"""
import ctypes
import itertools
import logging
import os
import queue
import random
import re
import sqlite3
import threading
import time
import weakref
from types import SimpleNamespace
from urllib.parse import quote

from .base import CHAT_PRESENCE_STATES, DeviceIdentity, EventKind, OutgoingMessage, ProviderError, SessionProvider

logger = logging.getLogger(__name__)

_GO_LOCK = threading.Lock()  # every call into the Go library, process-wide

STORE_SUFFIX = ".sqlite3"
LOCK_WAIT_S = 30.0  # send / pairing code / logout give up ("busy") after waiting this long for the Go lock
CONNECT_START_GRACE_S = 0.5  # longest the lock is held while Go registers a new client
LOGIN_STATUS_GRACE_S = 0.5  # ... and while Go reads its client map after a QR login outcome
MAX_RETRY_DELAY_S = 60.0
RETRY_JITTER = 0.2  # ±20 %
RECYCLE_AFTER_FAILURES = 3
FIRST_QR_EXPIRES_S = 60  # whatsmeow: the first code of a pairing attempt lives 60 s, each next one 20 s
NEXT_QR_EXPIRES_S = 20
PAIRING_WINDOW_S = 160  # 60 + 5 × 20: how long whatsmeow keeps a pairing websocket open
STOP_WAIT_S = 5.0  # stop() waits at most this long for the client to be stopped
RETURN_WAIT_S = 10.0  # after a stop, how long the supervisor waits for connect() to return
LOGOUT_WAIT_S = 15.0  # logout() waits at most this long for WhatsApp to confirm the unlink
STORE_READ_TIMEOUT_S = 5.0  # reading the store before a connect waits this long for a busy database
MESSAGE_TYPES = ("text", "image", "document", "audio", "video", "location", "contact", "reaction")
AUDIO_MIMETYPES = ("audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr", "audio/x-m4a",
                   "audio/x-hx-aac-adts")
VIDEO_MIMETYPES = ("video/mp4", "video/3gpp")
MEDIA_KINDS = {"image": "imageMessage", "video": "videoMessage", "document": "documentMessage",
               "audio": "audioMessage", "sticker": "stickerMessage"}
MEDIA_THREAD_IDLE_S = 60.0  # a provider's media download thread ends after this long without work

_STORE_ERROR_HINTS = ("not a database", "malformed", "file is encrypted", "unsupported file format")
_NETWORK_ERROR_HINTS = ("dial", "websocket", "deadline exceeded", "timeout", "timed out", "connection refused",
                        "no such host", "network is unreachable", "eof", "reset by peer", "handshake", "proxy")

_client_numbers = itertools.count(1)
_providers = weakref.WeakSet()


# --- neonize, loaded lazily ------------------------------------------------------------------------------------

_nz_loaded = None
_nz_lock = threading.Lock()


def _nz():
    """Import neonize once, undoing its `logging.basicConfig(level=INFO)` on the root logger."""
    global _nz_loaded
    if _nz_loaded is None:
        with _nz_lock:
            if _nz_loaded is None:
                root = logging.getLogger()
                level, handlers = root.level, list(root.handlers)
                try:
                    import neonize.client as nclient
                    from neonize import _binder
                    from neonize import events as nevents
                    from neonize.exc import NeonizeError
                    from neonize.proto import Neonize_pb2 as nproto
                    from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps
                    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
                    from neonize.utils.enum import ChatPresence, ChatPresenceMedia, ClientName, LogLevel, Presence
                    from neonize.utils.jid import Jid2String, JIDToNonAD, build_jid
                finally:
                    root.setLevel(level)
                    for handler in list(root.handlers):
                        if handler not in handlers:
                            root.removeHandler(handler)
                # This logger's level becomes whatsmeow's log level (each Go log line is a callback into Python):
                # warnings only, unless the deployment configured it.
                if nclient.log.level == logging.NOTSET:
                    nclient.log.setLevel(logging.WARNING)
                ns = SimpleNamespace(
                    nclient=nclient, binder=_binder, ev=nevents, ProxySettings=_binder.ProxySettings,
                    gocode=_binder.gocode, NeonizeError=NeonizeError, proto=nproto, wa=wa, DeviceProps=DeviceProps,
                    ClientName=ClientName, LogLevel=LogLevel, Jid2String=Jid2String, ChatPresence=ChatPresence,
                    ChatPresenceMedia=ChatPresenceMedia, Presence=Presence,
                    JIDToNonAD=JIDToNonAD, build_jid=build_jid, EVENT_TO_INT=nevents.EVENT_TO_INT,
                )
                ns.Client = _make_client_class(ns)
                _nz_loaded = ns
    return _nz_loaded


# --- the process-wide lock -------------------------------------------------------------------------------------

def _acquire(wait):
    return _GO_LOCK.acquire() if wait is None else _GO_LOCK.acquire(timeout=wait)


class _Gate:
    """Holds `_GO_LOCK` across a window whose end can only be observed from another thread: a callback from Go,
    a call returning, or a timer. (A plain Lock may be released by any thread.)"""

    def __init__(self):
        self._mu = threading.Lock()
        self._held = False
        self._timer = None

    def hold(self, max_s, wait=None):
        if not _acquire(wait):
            return False
        timer = threading.Timer(max_s, self.release)
        timer.daemon = True
        with self._mu:
            self._held, self._timer = True, timer
        timer.start()
        return True

    def release(self):
        with self._mu:
            if not self._held:
                return
            self._held, timer, self._timer = False, self._timer, None
        if timer is not None:
            timer.cancel()
        _GO_LOCK.release()


class _Attempt:
    """One connect() of one client: what Go has done so far, and whether a stop is due."""

    def __init__(self):
        self.mu = threading.Lock()
        self.gate = _Gate()
        self.started = False  # Neonize() was called
        self.progressed = False  # Go called back at least once: the websocket dial is over
        self.qr_loop = False  # Go is in its QR loop (stopping now would abort the process later)
        self.returned = False  # Neonize() returned (and the client was stopped right after)
        self.finished = False  # connect() returned on the connect thread
        self.stop_requested = False
        self.stopping = False
        self.stopped = False
        self.qr_seen = 0
        self.first_qr_at = None

    def safe_to_stop(self):  # with self.mu held
        return self.returned or (self.progressed and not self.qr_loop)


_pinned = {}  # key -> client while Go may call back into it (its ctypes callbacks must stay alive)
_pinned_lock = threading.Lock()


class _LockedLibrary:
    """Stands in for a client's Go handle (`client._NewClient__client`): every call takes `_GO_LOCK`."""

    _BLOCKING = frozenset({"Stop", "Disconnect"})  # must happen: wait for the lock as long as it takes

    def __init__(self, lib, client=None):
        self._lib = lib
        self._client = client

    def __getattr__(self, name):
        fn = getattr(self._lib, name)
        if name == "Neonize":
            return lambda *args: self._neonize(fn, *args)
        wait = None if name in self._BLOCKING else LOCK_WAIT_S

        def call(*args):
            if not _acquire(wait):
                raise ProviderError("busy", f"the WhatsApp library stayed busy for {wait:.0f} s ({name})")
            try:
                return fn(*args)
            finally:
                _GO_LOCK.release()

        return call

    def _neonize(self, fn, *args):
        client = self._client
        attempt = client._attempt
        with attempt.mu:
            if attempt.stop_requested:  # stopped before Go ever saw it: nothing to register, nothing to undo
                attempt.stopped = True
                return None
            attempt.started = True
        client._box.started = True
        with _pinned_lock:
            _pinned[client.uuid] = client
        attempt.gate.hold(CONNECT_START_GRACE_S)
        try:
            return fn(*args)
        finally:
            attempt.gate.release()
            with attempt.mu:
                attempt.returned = True
            # A returned Neonize() leaves its client in Go's maps (a failed dial also leaks its store connection,
            # whatever we do): Stop removes the entries.
            _stop_client(client)
            with _pinned_lock:
                _pinned.pop(client.uuid, None)


def _stop_client(client):
    """Stop a client's Go side once that is safe (see the module docstring), else when it becomes safe.
    Idempotent; may block while Go disconnects."""
    attempt = client._attempt
    with attempt.mu:
        attempt.stop_requested = True
        if attempt.stopping or attempt.stopped:
            return
        if not attempt.started:
            attempt.stopped = True
            return
        if not attempt.safe_to_stop():
            return  # _progress() or the return of Neonize() stops it
        attempt.stopping = True
    try:
        client.stop()
    except Exception:
        logger.exception("neonize client %s: stop failed", client.uuid.decode())
    finally:
        with attempt.mu:
            attempt.stopping, attempt.stopped = False, True
        client._box.stopped = True


def _progress(client, *, qr=None):
    """Go called back for this client (`qr`: True in its QR loop, False when the loop ended)."""
    attempt = client._attempt
    with attempt.mu:
        attempt.progressed = True
        if qr is not None:
            attempt.qr_loop = qr
        due = attempt.stop_requested and not (attempt.stopping or attempt.stopped) and attempt.safe_to_stop()
    attempt.gate.release()
    if due:  # never stop from inside a Go callback
        threading.Thread(target=_stop_client, args=(client,), daemon=True, name="neonize-stop").start()


def _release_forgotten_client(lib, uuid, box):
    """weakref finalizer (replaces neonize's unlocked one): a client dropped without a stop is stopped."""
    if box.started and not box.stopped:
        def stop():
            with _GO_LOCK:
                lib.Stop(uuid)

        threading.Thread(target=stop, daemon=True, name="neonize-finalize").start()


def _make_client_class(nz):
    NewClient = nz.nclient.NewClient
    binder = nz.binder

    class Client(NewClient):
        """NewClient with a key of its own, the locked Go handle, a connect() that blocks the calling thread, and
        hooks that report Go's progress."""

        def __init__(self, store_file, key, *, jid=None, new_device=False, on_login_status=None):
            super().__init__(store_file, jid=jid, uuid=key, new_device=new_device)
            self._stop_finalizer.detach()  # neonize's finalizer calls Stop without our lock
            self.uuid = key.encode()  # neonize would use jid.User when resuming
            self.contact = nz.nclient.ContactStore(self.uuid)
            self.contact._ContactStore__client = _LockedLibrary(nz.gocode, self)  # it calls Go unlocked otherwise
            self.chat_settings = nz.nclient.ChatSettingsStore(self.uuid)
            self._NewClient__client = _LockedLibrary(nz.gocode, self)
            self._attempt = _Attempt()
            self._box = SimpleNamespace(started=False, stopped=False)
            self._stop_finalizer = weakref.finalize(self, _release_forgotten_client, nz.gocode, self.uuid,
                                                    self._box)
            self._on_login_status = on_login_status
            execute = self.event.execute

            def execute_and_note_progress(uuid, binary, size, code):
                _progress(self)
                return execute(uuid, binary, size, code)

            self.event.execute = execute_and_note_progress

        def new_attempt(self):
            self._attempt = _Attempt()
            return self._attempt

        def connect(self, proxy_settings=None):
            """neonize's connect_with_proxy, minus its extra non-daemon thread: Go's Neonize() runs on the calling
            thread and returns when the client is stopped (or never, after a QR timeout: see the module doc)."""
            subscribed = bytearray(list(self.event.list_func))
            # "os" is the name the phone lists under Linked devices
            props = (self.device_props or nz.DeviceProps(os="Switchboard", platformType=nz.DeviceProps.SAFARI))
            props = props.SerializeToString()
            jid = self.jid.SerializeToString() if self.jid else b""
            c_proxy = proxy_settings._to_c_struct() if proxy_settings is not None else None
            self._connect_refs = refs = (
                binder.func_string(self._NewClient__onQr),
                binder.func_string(self._NewClient__onLoginStatus),
                binder.func_callback_bytes(self.event.execute),
                binder.func_callback_bytes2(nz.nclient.log_whatsmeow),
                (ctypes.c_char * len(subscribed)).from_buffer(subscribed),
                subscribed,
                c_proxy,
            )
            qr_cb, login_cb, event_cb, log_cb, subscriber_buf, _, _ = refs
            err = self._NewClient__client.Neonize(
                self.name.encode(), self.uuid, jid, len(jid), int(self.new_device),
                nz.LogLevel.from_logging(nz.nclient.log.level).level, qr_cb, login_cb, event_cb, log_cb,
                subscriber_buf, len(subscribed), props, len(props), b"", 0,
                ctypes.byref(c_proxy) if c_proxy is not None else None,
            )
            if err:
                raise nz.NeonizeError(err.decode(errors="replace") if isinstance(err, bytes) else str(err))

        def _NewClient__onLoginStatus(self, uuid, status):  # QR loop outcome: "success", "timeout", "err-…"
            # Right after this callback Go reads its client map (FetchMe): hold the lock over that read, until the
            # first event arrives (or briefly, when none will).
            self._attempt.gate.release()  # the connect-start hold, if Go never called back before
            self._attempt.gate.hold(LOGIN_STATUS_GRACE_S, wait=5.0)
            text = ctypes.string_at(status).decode(errors="replace") if status else ""
            try:
                if self._on_login_status is not None:
                    self._on_login_status(self, text)
            except Exception:
                logger.exception("neonize login status handler failed")
            with self._attempt.mu:
                self._attempt.progressed, self._attempt.qr_loop = True, False
                due = (self._attempt.stop_requested and not (self._attempt.stopping or self._attempt.stopped))
            if due:  # waits for the lock, i.e. until Go has read its map
                threading.Thread(target=_stop_client, args=(self,), daemon=True, name="neonize-stop").start()

    return Client


# --- helpers ---------------------------------------------------------------------------------------------------

def store_path(store_dir, session_key):
    """`<store_dir>/<escaped key>.sqlite3`. Go opens it as `file:<path>?_foreign_keys=on`, so the name keeps to
    [A-Za-z0-9_.-]; anything else becomes `=XX` (reversible: "t_a:1" and "t_a_1" stay distinct)."""
    name = quote(session_key, safe="").replace("%", "=") or "="
    if name.startswith("."):
        name = "=2E" + name[1:]
    return os.path.join(os.path.abspath(store_dir), name + STORE_SUFFIX)


def phone_digits(phone):
    """"+1 (555) 010-0001" → "15550100001"; ProviderError("invalid_phone") unless 7–15 digits (E.164)."""
    digits = re.sub(r"[\s().+-]", "", str(phone or ""))
    if not re.fullmatch(r"[0-9]{7,15}", digits):
        raise ProviderError("invalid_phone", f"not a phone number in international format: {phone!r}")
    return digits


def _jid_string(jid):
    return _nz().Jid2String(jid) if jid is not None and (jid.User or jid.Server) else ""


def _phone_of(jid):
    if jid is not None and jid.User and jid.Server == "s.whatsapp.net":
        return "+" + jid.User
    return None


def _plain_jid(jid):
    """"user@server" without the device part ("" for an empty JID); needs no Go call."""
    return f"{jid.User}@{jid.Server}" if jid is not None and jid.User and jid.Server else ""


def contact_entry(contact):
    """A neonize Contact (JID + ContactInfo) → {jid, phone, name, push_name, lid} (SessionProvider.fetch_contacts)."""
    jid, info = contact.JID, contact.Info
    return {"jid": _plain_jid(jid), "phone": _phone_of(jid),
            "name": info.FullName or info.FirstName or info.BusinessName, "push_name": info.PushName,
            "lid": _plain_jid(jid) if jid.Server == "lid" else None}


def group_entry(group):
    """A neonize GroupInfo → {jid, name, topic, participants: [{jid, phone, is_admin}]}."""
    participants = []
    for p in group.Participants:
        phone = _phone_of(p.PhoneNumber) if p.HasField("PhoneNumber") else None
        participants.append({"jid": _plain_jid(p.JID), "phone": phone or _phone_of(p.JID),
                             "is_admin": bool(p.IsAdmin or p.IsSuperAdmin)})
    return {"jid": _plain_jid(group.JID), "name": group.GroupName.Name, "topic": group.GroupTopic.Topic,
            "participants": participants}


def _is_store_error(err):
    text = (err or "").lower()
    return any(hint in text for hint in _STORE_ERROR_HINTS)


def _is_network_error(err):
    text = (err or "").lower()
    return any(hint in text for hint in _NETWORK_ERROR_HINTS)


def _media_limit(kind):
    """Largest inbound media kept, in bytes (the limits of outgoing media, WHATSAPP_*_MAX_MB)."""
    from django.conf import settings

    megabytes = settings.WHATSAPP_DOCUMENT_MAX_MB if kind == "document" else settings.WHATSAPP_MEDIA_MAX_MB
    return int(megabytes * 1024 * 1024)


def _unwrap(message):
    for _ in range(4):
        for wrapper in ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension",
                        "documentWithCaptionMessage", "editedMessage"):
            if message.HasField(wrapper) and getattr(message, wrapper).HasField("message"):
                message = getattr(message, wrapper).message
                break
        else:
            return message
    return message


def describe_message(message):
    """A waE2E.Message → {type, text, caption, ...} (text holds the caption for media)."""
    m = _unwrap(message)
    if m.HasField("conversation"):
        return {"type": "text", "text": m.conversation}
    if m.HasField("extendedTextMessage"):
        x = m.extendedTextMessage
        data = {"type": "text", "text": x.text}
        if x.HasField("contextInfo") and x.contextInfo.stanzaID:
            data["quoted_id"] = x.contextInfo.stanzaID
        return data
    for field, kind in (("imageMessage", "image"), ("videoMessage", "video"), ("documentMessage", "document"),
                        ("audioMessage", "audio"), ("stickerMessage", "sticker")):
        if m.HasField(field):
            x = getattr(m, field)
            caption = getattr(x, "caption", "") or ""
            data = {"type": kind, "text": caption, "caption": caption, "mimetype": x.mimetype,
                    "file_length": x.fileLength}
            if kind == "document":
                data["filename"] = x.fileName
            if x.HasField("contextInfo") and x.contextInfo.stanzaID:
                data["quoted_id"] = x.contextInfo.stanzaID
            return data
    if m.HasField("locationMessage"):
        x = m.locationMessage
        return {"type": "location", "text": x.name or x.address or "", "latitude": x.degreesLatitude,
                "longitude": x.degreesLongitude}
    if m.HasField("liveLocationMessage"):
        x = m.liveLocationMessage
        return {"type": "location", "text": x.caption, "latitude": x.degreesLatitude,
                "longitude": x.degreesLongitude}
    if m.HasField("contactMessage"):
        return {"type": "contact", "text": m.contactMessage.displayName, "vcard": m.contactMessage.vcard}
    if m.HasField("contactsArrayMessage"):
        return {"type": "contact", "text": m.contactsArrayMessage.displayName}
    if m.HasField("reactionMessage"):
        x = m.reactionMessage
        return {"type": "reaction", "text": x.text, "reaction": x.text, "reaction_to": x.key.ID}
    if m.HasField("pollCreationMessage") or m.HasField("pollCreationMessageV3"):
        poll = m.pollCreationMessage if m.HasField("pollCreationMessage") else m.pollCreationMessageV3
        return {"type": "poll", "text": poll.name}
    if m.HasField("protocolMessage"):
        return {"type": "protocol", "text": ""}
    return {"type": "unknown", "text": ""}


_LOGOUT_REASONS = {
    "LOGGED_OUT": "logged out from the phone",
    "MAIN_DEVICE_GONE": "the phone's WhatsApp account is gone",
    "UNKNOWN_LOGOUT": "logged out by WhatsApp",
}


class _Run:
    """State of one start() .. stop(): the supervisor's queue and what the handlers need to agree on."""

    def __init__(self, pairing_phone):
        self.stop_evt = threading.Event()
        self.q = queue.Queue()
        self.thread = None
        self.client = None
        self.pair_phone = pairing_phone
        self.pair_issued = None  # (attempt, phone) of the last code issued
        self.pair_busy = False
        self.qr_count = 0
        self.retry = 0  # number of the retry announced last
        self.lost_at = None  # when a lost connection is given up on (whatsmeow reconnects in place until then)
        self.lost_reason = None
        self.terminal = None  # "qr_expired" | "logged_out" | "replaced" | "fatal" | "store"
        self.delete_store = False
        self.tearing_down = False
        self.paired = False
        self.last_error = None


# --- the provider ----------------------------------------------------------------------------------------------

class NeonizeProvider(SessionProvider):
    name = "neonize"

    def __init__(self, session_key, *, emit, settings, store_dir, identity=None, proxy_address=None):
        super().__init__(session_key, emit=emit, settings=settings, store_dir=store_dir, identity=identity)
        self.proxy_address = proxy_address  # e.g. "socks5://host:1080"; also how tests make dials fail fast
        self._mu = threading.RLock()
        self._run = None
        self._connected = False
        self._download_queue = None  # inbound media waiting for this provider's download thread
        try:
            os.makedirs(self.store_dir, exist_ok=True)
        except OSError:
            pass  # reported as ERROR store_unavailable by start()
        _providers.add(self)

    # --- the interface ---

    @property
    def store_file(self):
        return store_path(self.store_dir, self.session_key)

    @property
    def is_connected(self):
        # Tracked from events, not asked of Go: IsConnected waits for whatsmeow's socket lock, which an
        # in-flight dial holds for up to a minute (with the process-wide lock held meanwhile).
        return self._connected

    def start(self, *, pairing_phone=None):
        phone = phone_digits(pairing_phone) if pairing_phone else None
        with self._mu:
            if phone and self.identity is not None:
                raise ProviderError("already_linked", "the session is linked to a phone; unlink it to link another")
            if self._run is not None and self._run.thread.is_alive() and not self._run.stop_evt.is_set():
                raise ProviderError("already_started", "the session is already running")
            run = _Run(phone)
            run.thread = threading.Thread(target=self._supervise, args=(run,), daemon=True,
                                          name=f"neonize-{self.session_key}")
            self._run = run
            self._connected = False
        run.thread.start()

    def stop(self):
        with self._mu:
            run, self._run = self._run, None
            self._connected = False
        if run is None:
            return
        run.stop_evt.set()
        run.q.put(("stop",))
        if threading.current_thread() is not run.thread:
            run.thread.join(STOP_WAIT_S)

    def logout(self):
        with self._mu:
            run = self._run
            client = run.client if run is not None else None
            connected = self._connected
            if run is not None:
                run.terminal = run.terminal or "logged_out"  # whatever Go says from now on is not news
        unlinked = False
        if client is not None and connected:
            done, box = threading.Event(), {}

            def unlink():
                try:
                    client.logout()
                except Exception as exc:
                    box["error"] = exc
                finally:
                    done.set()

            threading.Thread(target=unlink, daemon=True, name=f"neonize-logout-{self.session_key}").start()
            if done.wait(LOGOUT_WAIT_S) and "error" not in box:
                unlinked = True
            else:
                logger.warning("session %s: WhatsApp did not confirm the logout (%s); forgetting the device anyway",
                               self.session_key, box.get("error", "timed out"))
        self.stop()
        self._delete_store()
        with self._mu:
            self.identity = None
        self.emit(EventKind.LOGGED_OUT, reason="logged out by user", unlinked=unlinked)

    def request_pairing_code(self, phone):
        digits = phone_digits(phone)
        with self._mu:
            if self.identity is not None:
                raise ProviderError("already_linked", "the session is linked to a phone; unlink it to link another")
            run = self._run
            running = run is not None and run.thread.is_alive() and not run.stop_evt.is_set()
            if running:
                run.pair_phone = digits
        if not running:
            self.start(pairing_phone=digits)
            return
        run.q.put(("pair",))  # the supervisor asks Go once the websocket is up (first QR of the attempt)

    def send(self, to, message: OutgoingMessage):
        if message.type not in MESSAGE_TYPES:
            raise ProviderError("unsupported_type", f"message type {message.type!r} is not supported")
        with self._mu:
            run = self._run
            client = run.client if run is not None else None
            if client is None or not self._connected:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
        nz = _nz()
        jid = self._recipient(to)
        try:
            msg = self._build_message(nz, client, message, jid)
            response = client.send_message(jid, msg)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError("send_failed", str(exc) or exc.__class__.__name__) from exc
        return response.ID

    def send_chat_presence(self, to, state):
        """whatsmeow's SendChatPresence: "typing…" (composing) or not (paused) on the contact's phone."""
        if state not in CHAT_PRESENCE_STATES:
            raise ProviderError("invalid_presence", f"chat presence is one of {', '.join(CHAT_PRESENCE_STATES)}")
        client = self._connected_client()
        nz = _nz()
        jid = self._recipient(to)
        presence = (nz.ChatPresence.CHAT_PRESENCE_COMPOSING if state == "composing"
                    else nz.ChatPresence.CHAT_PRESENCE_PAUSED)
        try:
            client.send_chat_presence(jid, presence, nz.ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT)
        except Exception as exc:
            raise ProviderError("presence_failed", str(exc) or exc.__class__.__name__) from exc

    def set_available(self, available):
        """whatsmeow's SendPresence: the number shows online (available) to everyone, and WhatsApp starts sending
        the contacts' chat presence (ChatPresenceEv → CHAT_PRESENCE). Sent again on every connection while on."""
        super().set_available(available)
        with self._mu:
            connected = self._connected
        if connected:
            self._send_presence(self._connected_client())

    def _send_presence(self, client):
        nz = _nz()
        try:
            client.send_presence(nz.Presence.AVAILABLE if self.available else nz.Presence.UNAVAILABLE)
        except Exception:
            logger.warning("session %s: presence not sent", self.session_key, exc_info=True)

    def fetch_contacts(self):
        """whatsmeow's contact store (the phone's address book and the push names seen), translated."""
        client = self._connected_client()
        try:
            return [contact_entry(contact) for contact in client.contact.get_all_contacts()]
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError("sync_failed", f"reading contacts failed: {exc}") from exc

    def fetch_groups(self):
        client = self._connected_client()
        try:
            return [group_entry(group) for group in client.get_joined_groups()]
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError("sync_failed", f"reading groups failed: {exc}") from exc

    def _connected_client(self):
        with self._mu:
            run = self._run
            client = run.client if run is not None else None
            if client is None or not self._connected:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
        return client

    # --- the supervisor (one thread per start) ---

    def _supervise(self, run):
        try:
            if not self._prepare_store(run):
                return
            client, failures_on_client = None, 0
            while not run.stop_evt.is_set():
                with self._mu:
                    resume_paired = self.identity is not None and client is not None and client.new_device
                if (client is None or failures_on_client >= RECYCLE_AFTER_FAILURES or not client._attempt.finished
                        or resume_paired):
                    client, failures_on_client = self._new_client(run), 0
                attempt = client.new_attempt()
                with self._mu:
                    if run.stop_evt.is_set():
                        break
                    run.client, run.lost_at, run.tearing_down = client, None, False
                problem = self._check_store(run)
                if problem is None:
                    threading.Thread(target=self._connect_thread, args=(run, client, attempt), daemon=True,
                                     name=client.uuid.decode()).start()
                    outcome, reason, announced = self._watch(run, client, attempt)
                else:
                    attempt.finished = True  # never started
                    (outcome, reason), announced = problem, False
                if outcome != "failed":
                    break
                failures_on_client += 1
                if not self._retry_or_give_up(run, reason, announced):
                    break
        except Exception as exc:
            logger.exception("session %s: supervisor failed", self.session_key)
            self.emit(EventKind.ERROR, code="internal", message=f"the WhatsApp client failed: {exc}", fatal=True)
        finally:
            with self._mu:
                client = run.client
                if self._run is run:
                    self._connected = False
            if client is not None:
                _stop_client(client)
                if run.delete_store:  # let Go close the device first when it can
                    self._await_return(run, client._attempt, RETURN_WAIT_S, until_stop=False)
            if run.delete_store:
                self._delete_store()

    def _connect_thread(self, run, client, attempt):
        """Blocks in connect() for the life of the connection; only the supervisor looks at what it left."""
        error = None
        try:
            self._connect_blocking(client)
        except Exception as exc:
            error = str(exc) or exc.__class__.__name__
        finally:
            attempt.finished = True
            run.q.put(("returned", attempt, error))

    def _connect_blocking(self, client):
        nz = _nz()
        proxy = nz.ProxySettings(proxy_address=self.proxy_address) if self.proxy_address else None
        client.connect(proxy)

    def _watch(self, run, client, attempt):
        """Until this attempt ends: ("stop"|"terminal"|"failed", reason, announced)."""
        timeout_s = max(self.settings.connection_timeout_ms, 0) / 1000
        began, silence_reported = time.monotonic(), False
        while True:
            with self._mu:
                lost_at = run.lost_at
            wait = 1.0 if lost_at is None else min(1.0, max(lost_at - time.monotonic(), 0))
            try:
                msg = run.q.get(timeout=wait)
            except queue.Empty:
                msg = None
            if run.stop_evt.is_set():
                _stop_client(client)  # now, or as soon as Go allows it
                return "stop", None, False
            kind = msg[0] if msg else None
            if kind == "returned" and msg[1] is attempt:
                return self._attempt_returned(run, msg[2])
            if kind == "terminal" and msg[1] is attempt:
                _stop_client(client)
                self._await_return(run, attempt, RETURN_WAIT_S)
                return "terminal", run.terminal, False
            if kind in ("qr", "pair"):
                self._maybe_request_pair_code(run, client, attempt)
            if kind == "connected" and self.available:
                self._send_presence(client)
            now = time.monotonic()
            with self._mu:
                give_up = run.lost_at is not None and now >= run.lost_at and run.terminal is None
                if give_up:
                    run.tearing_down, reason = True, run.lost_reason
            if give_up:  # whatsmeow did not get the connection back in place: start over with a new connect
                _stop_client(client)
                self._await_return(run, attempt, RETURN_WAIT_S)
                if run.stop_evt.is_set():
                    return "stop", None, False
                return "failed", reason, True
            if (timeout_s and not silence_reported and not attempt.progressed and not attempt.returned
                    and now - began >= timeout_s):
                silence_reported = True  # Go's dial cannot be cut short: say so rather than hang silently
                self.emit(EventKind.DISCONNECTED, reason="WhatsApp is not answering", will_retry=True,
                          retry_in=None, attempt=run.retry)

    def _attempt_returned(self, run, error):
        with self._mu:
            terminal = run.terminal
            announced = run.lost_at is not None
            remaining = max(run.lost_at - time.monotonic(), 0) if announced else 0
            reason = run.lost_reason if announced else None
            run.lost_at = None
            if self._run is run:
                self._connected = False
        if terminal:
            return "terminal", terminal, False
        if error and _is_store_error(error):
            with self._mu:
                run.terminal = "store"
            self.emit(EventKind.ERROR, code="store_corrupt", fatal=True,
                      message=f"the device store is unreadable ({error}); unlink the phone and link again")
            return "terminal", "store", False
        run.last_error = error
        if announced:  # the DISCONNECTED for this retry is out already: keep the delay it announced
            if remaining and run.stop_evt.wait(remaining):
                return "stop", None, False
            return "failed", reason, True
        if error and _is_network_error(error):
            return "failed", "cannot reach WhatsApp", False
        if error:
            return "failed", f"could not connect to WhatsApp: {error}", False
        return "failed", "the connection to WhatsApp closed", False

    def _retry_or_give_up(self, run, reason, announced):
        """After a failed attempt: announce the next one and wait for it (True), or give up (False)."""
        if run.stop_evt.is_set():
            return False
        limit = self.settings.max_reconnect_attempts
        if announced:  # _on_lost announced it (or that there would be none)
            return limit > 0
        if run.retry >= limit:
            if reason == "cannot reach WhatsApp":
                self.emit(EventKind.ERROR, code="unreachable", fatal=True, detail=run.last_error,
                          message=f"cannot reach WhatsApp after {run.retry + 1} attempts")
            else:
                self.emit(EventKind.DISCONNECTED, reason=reason, will_retry=False, retry_in=None, attempt=run.retry)
            return False
        run.retry += 1
        delay = self._retry_delay(run.retry)
        self.emit(EventKind.DISCONNECTED, reason=reason, will_retry=True, retry_in=round(delay, 3),
                  attempt=run.retry, detail=run.last_error)
        deadline = time.monotonic() + delay
        while not run.stop_evt.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                run.q.get(timeout=left)  # "stop" wakes us; a pairing request waits for the next attempt's QR
            except queue.Empty:
                pass
        return False

    def _retry_delay(self, attempt):
        base = max(self.settings.reconnect_delay_ms, 0) / 1000 * 2 ** min(attempt - 1, 30)
        return min(base * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER), MAX_RETRY_DELAY_S)

    @staticmethod
    def _await_return(run, attempt, timeout, until_stop=True):
        """Wait (bounded) for connect() of `attempt` to return, consuming the queue; cut short by stop()."""
        deadline = time.monotonic() + timeout
        while not attempt.finished:
            left = deadline - time.monotonic()
            if left <= 0 or (until_stop and run.stop_evt.is_set()):
                return False
            try:
                run.q.get(timeout=min(left, 0.2))
            except queue.Empty:
                pass
        return True

    # --- pairing codes ---

    def _maybe_request_pair_code(self, run, client, attempt):
        with self._mu:
            phone = run.pair_phone
            if (phone is None or run.pair_busy or run.client is not client or not attempt.qr_seen
                    or run.pair_issued == (attempt, phone) or not self._live(run, client)
                    or self.identity is not None):
                return
            run.pair_busy, run.pair_issued = True, (attempt, phone)
        threading.Thread(target=self._pair_worker, args=(run, client, attempt, phone), daemon=True,
                         name=f"neonize-pair-{self.session_key}").start()

    def _pair_worker(self, run, client, attempt, phone):
        """PairPhone goes to WhatsApp (under the Go lock), hence its own thread."""
        nz = _nz()
        try:
            code = client.PairPhone(phone, True, client_name=nz.ClientName.LINUX)
        except Exception as exc:
            with self._mu:
                run.pair_issued = None
                current = self._live(run, client)
            if current:
                code_ = exc.code if isinstance(exc, ProviderError) else "pair_code_failed"
                self.emit(EventKind.ERROR, code=code_, fatal=False,
                          message=f"WhatsApp did not give a pairing code: {exc}")
        else:
            with self._mu:
                current = self._live(run, client)
            if current:
                # whatsmeow closes the pairing websocket when its QR codes run out, ~160 s after the first.
                left = PAIRING_WINDOW_S - (time.monotonic() - (attempt.first_qr_at or time.monotonic()))
                self.emit(EventKind.PAIR_CODE, code=code, phone=f"+{phone}", expires_in=max(round(left), 0))
        finally:
            with self._mu:
                run.pair_busy = False
                again = run.pair_phone != phone
            if again:  # the number changed while we asked
                run.q.put(("pair",))

    # --- clients ---

    def _new_client(self, run):
        nz = _nz()
        key = f"{os.path.basename(self.store_file)[:-len(STORE_SUFFIX)]}#{next(_client_numbers)}"
        with self._mu:
            identity = self.identity

        def on_login_status(client, text):
            self._on_login_status(run, client, text)

        if identity is not None:
            jid = nz.proto.JID(User=identity.jid_user, Device=int(identity.jid_device), Server="s.whatsapp.net",
                               RawAgent=0, Integrator=0, IsEmpty=False)
            client = nz.Client(self.store_file, key, jid=jid, on_login_status=on_login_status)
        else:
            client = nz.Client(self.store_file, key, new_device=True, on_login_status=on_login_status)
        self._register_handlers(run, client)
        return client

    def _register_handlers(self, run, client):
        ev = _nz().ev

        def on(event_type, method, *extra):
            def handler(c, event):
                try:
                    method(run, c, event, *extra)
                except Exception:
                    logger.exception("session %s: %s handler failed", self.session_key, event_type.__name__)

            client.event(event_type)(handler)

        client.event.qr(lambda c, data: self._guarded(self._on_qr, run, c, data))
        on(ev.PairStatusEv, self._on_pair_status)
        on(ev.ConnectedEv, self._on_connected)
        on(ev.KeepAliveRestoredEv, self._on_keepalive_restored)
        on(ev.DisconnectedEv, self._on_lost, "the connection to WhatsApp was lost")
        on(ev.KeepAliveTimeoutEv, self._on_keepalive_timeout)
        on(ev.StreamErrorEv, self._on_stream_error)
        on(ev.ConnectFailureEv, self._on_connect_failure)
        on(ev.LoggedOutEv, self._on_logged_out)
        on(ev.StreamReplacedEv, self._on_stream_replaced)
        on(ev.TemporaryBanEv, self._on_temporary_ban)
        on(ev.ClientOutdatedEv, self._on_client_outdated)
        on(ev.MessageEv, self._on_message)
        on(ev.ReceiptEv, self._on_receipt)
        on(ev.ChatPresenceEv, self._on_chat_presence)

    def _guarded(self, fn, *args):
        try:
            fn(*args)
        except Exception:
            logger.exception("session %s: %s failed", self.session_key, fn.__name__)

    def _live(self, run, client):
        """Whether an event of `client` still speaks for the session (call with self._mu held)."""
        return (self._run is run and run.client is client and not run.stop_evt.is_set() and run.terminal is None
                and not run.tearing_down)

    def _end(self, run, client, terminal, *, delete_store=False):
        """Mark the run finished by a terminal event (call with self._mu held); False if it already was."""
        if not self._live(run, client):
            return False
        run.terminal, run.delete_store = terminal, delete_store
        self._connected = False
        run.q.put(("terminal", client._attempt))
        return True

    # --- handlers: translate, emit, maybe enqueue; never call Go ---

    def _on_qr(self, run, client, data):
        _progress(client, qr=True)
        code = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        limit = self.settings.max_qr_attempts
        attempt = client._attempt
        with self._mu:
            if not self._live(run, client):
                return
            attempt.qr_seen += 1
            first_of_attempt = attempt.qr_seen == 1
            if first_of_attempt:
                attempt.first_qr_at = time.monotonic()
            pairing = run.pair_phone is not None
            if not pairing:
                run.qr_count += 1
            count = run.qr_count
            expired = not pairing and 0 < limit < count
            if expired:
                self._end(run, client, "qr_expired")
        if first_of_attempt:
            run.q.put(("qr",))  # the websocket is up: a pending pairing code can be asked for
        if expired:
            self.emit(EventKind.QR_EXPIRED, attempts=limit, message="QR expired, restart")
        elif not pairing:
            self.emit(EventKind.QR, code=code, expires_in=FIRST_QR_EXPIRES_S if first_of_attempt else
                      NEXT_QR_EXPIRES_S, attempt=count, max_attempts=limit)

    def _on_login_status(self, run, client, text):
        if text == "success":
            return  # PAIRED comes with PairStatusEv, then CONNECTED
        with self._mu:
            pairing, count = run.pair_phone is not None, run.qr_count
            if not self._end(run, client, "qr_expired" if text == "timeout" else "fatal"):
                return
        if text == "timeout":
            self.emit(EventKind.QR_EXPIRED, attempts=count,
                      message="pairing code expired, restart" if pairing else "QR expired, restart")
        elif text == "err-client-outdated":
            self.emit(EventKind.ERROR, code="client_outdated", fatal=True,
                      message="WhatsApp rejected this client version: update neonize")
        elif text == "err-scanned-without-multidevice":
            self.emit(EventKind.ERROR, code="pair_failed", fatal=True,
                      message="the phone scanned without multi-device support: update WhatsApp and try again")
        else:
            self.emit(EventKind.ERROR, code="pair_failed", fatal=True, message=f"linking failed ({text})")

    def _on_pair_status(self, run, client, ev):
        nz = _nz()
        if ev.Status == nz.proto.PairStatus.SUCCESS:
            jid = ev.ID
            with self._mu:
                if not self._live(run, client):
                    return
                self.identity = DeviceIdentity(jid.User, int(jid.Device))
                run.paired = True
            self.emit(EventKind.PAIRED, jid_user=jid.User, jid_device=int(jid.Device), phone=_phone_of(jid),
                      push_name=ev.BusinessName or None, platform=ev.Platform or None)
        else:
            with self._mu:
                if not self._end(run, client, "fatal"):
                    return
            self.emit(EventKind.ERROR, code="pair_failed", fatal=True,
                      message=f"linking failed: {ev.Error or 'WhatsApp refused the pairing'}")

    def _on_connected(self, run, client, ev):
        me = client.me
        me_jid = me.JID if me is not None and me.HasField("JID") and me.JID.User else None
        paired_now = False
        with self._mu:
            if not self._live(run, client):
                return
            if self.identity is None and me_jid is not None:  # PairStatusEv missed: the store knows the device
                self.identity = DeviceIdentity(me_jid.User, int(me_jid.Device))
            if self.identity is not None and not run.paired and client.new_device:
                run.paired = paired_now = True
            identity = self.identity
            run.lost_at = run.lost_reason = None
            run.retry = 0
            self._connected = True
        phone = _phone_of(me_jid) or (f"+{identity.jid_user}" if identity else None)
        push_name = (me.PushName if me is not None else "") or None
        if paired_now:
            self.emit(EventKind.PAIRED, jid_user=identity.jid_user, jid_device=identity.jid_device, phone=phone,
                      push_name=push_name)
        self.emit(EventKind.CONNECTED, phone=phone, push_name=push_name,
                  jid_user=identity.jid_user if identity else None,
                  jid_device=identity.jid_device if identity else None)
        run.q.put(("connected",))

    def _on_lost(self, run, client, ev, reason, grace_floor_s=0.0):
        """The connection dropped or stopped answering. whatsmeow reconnects in place (same store connection); if
        it has not by the announced retry time, the supervisor stops it and connects anew, with backoff."""
        limit = self.settings.max_reconnect_attempts
        with self._mu:
            if not self._live(run, client) or run.lost_at is not None:
                return
            self._connected = False
            if limit > 0:
                run.retry += 1
                delay = max(self._retry_delay(run.retry), grace_floor_s)
                data = dict(will_retry=True, retry_in=round(delay, 3), attempt=run.retry)
            else:
                delay, data = 0.0, dict(will_retry=False, retry_in=None, attempt=0)
            run.lost_at, run.lost_reason = time.monotonic() + delay, reason
        self.emit(EventKind.DISCONNECTED, reason=reason, **data)
        run.q.put(("lost",))

    def _on_keepalive_timeout(self, run, client, ev):
        # whatsmeow keeps pinging and reports KeepAliveRestored when an answer comes: give it two intervals.
        self._on_lost(run, client, ev, "WhatsApp stopped answering keep-alives",
                      grace_floor_s=2 * max(self.settings.keepalive_interval_ms, 0) / 1000)

    def _on_keepalive_restored(self, run, client, ev):
        with self._mu:
            lost = run.lost_at is not None
        if lost:
            self._on_connected(run, client, ev)

    def _on_stream_error(self, run, client, ev):
        self._on_lost(run, client, ev, f"WhatsApp closed the stream (error {ev.Code or 'unknown'})")

    def _on_connect_failure(self, run, client, ev):
        nz = _nz()
        name = nz.proto.ConnectFailureReason.Name(ev.Reason) if ev.HasField("Reason") else "GENERIC"
        if name in _LOGOUT_REASONS:
            return self._log_out(run, client, _LOGOUT_REASONS[name])
        if name == "TEMP_BANNED":
            return self._fail(run, client, "banned", f"WhatsApp temporarily banned this number ({ev.Message})")
        if name in ("CLIENT_OUTDATED", "BAD_USER_AGENT"):
            return self._fail(run, client, "client_outdated",
                              f"WhatsApp rejected this client ({name.lower()}): update neonize")
        detail = f"{name.lower()}: {ev.Message}" if ev.Message else name.lower()
        self._on_lost(run, client, ev, f"WhatsApp refused the connection ({detail})")

    def _on_logged_out(self, run, client, ev):
        nz = _nz()
        name = nz.proto.ConnectFailureReason.Name(ev.Reason) if ev.HasField("Reason") else "LOGGED_OUT"
        self._log_out(run, client, _LOGOUT_REASONS.get(name, f"logged out by WhatsApp ({name.lower()})"))

    def _log_out(self, run, client, reason):
        with self._mu:
            if not self._end(run, client, "logged_out", delete_store=True):
                return
            self.identity = None  # whatsmeow deleted the device from the store; the file goes too
        self.emit(EventKind.LOGGED_OUT, reason=reason)

    def _on_stream_replaced(self, run, client, ev):
        # Another client connected with this device's keys (a second host?). The device is still linked: keep
        # the store, and do not reconnect (the two would keep replacing each other).
        with self._mu:
            if not self._end(run, client, "replaced"):
                return
        self.emit(EventKind.LOGGED_OUT, reason="another client connected with this session (stream replaced)",
                  store_kept=True)

    def _on_temporary_ban(self, run, client, ev):
        nz = _nz()
        reasons = nz.proto.TemporaryBan.TempBanReason
        why = reasons.Name(ev.Code).lower().replace("_", " ") if ev.HasField("Code") else "unknown"
        expires = f", lifted in {ev.Expire} s" if ev.Expire else ""
        self._fail(run, client, "banned", f"WhatsApp temporarily banned this number ({why}{expires})")

    def _on_client_outdated(self, run, client, ev):
        self._fail(run, client, "client_outdated", "WhatsApp rejected this client version: update neonize")

    def _fail(self, run, client, code, message):
        with self._mu:
            if not self._end(run, client, "fatal"):
                return
        self.emit(EventKind.ERROR, code=code, message=message, fatal=True)

    def _on_message(self, run, client, ev):
        with self._mu:
            if run.client is not client:  # delivered until the client is gone: whatsmeow has acked it already
                return
        nz = _nz()
        info = ev.Info
        source = info.MessageSource
        sender = nz.JIDToNonAD(source.Sender) if source.HasField("Sender") else None
        alt = nz.JIDToNonAD(source.SenderAlt) if source.HasField("SenderAlt") and source.SenderAlt.User else None
        sender_phone = _phone_of(sender) or _phone_of(alt)
        data = dict(id=info.ID, chat=_jid_string(nz.JIDToNonAD(source.Chat)), sender=_jid_string(sender),
                    sender_phone=sender_phone, sender_alt=_jid_string(alt) or None, from_me=source.IsFromMe,
                    is_group=source.IsGroup, timestamp=info.Timestamp, push_name=info.Pushname or None)
        data.update(describe_message(ev.Message))
        if data["type"] in MEDIA_KINDS and not data.get("from_me"):
            self._download_then_emit(client, ev.Message, data)
            return
        self.emit(EventKind.MESSAGE, **data)

    def _on_chat_presence(self, run, client, ev):
        with self._mu:
            if run.client is not client:
                return
        nz = _nz()
        source = ev.MessageSource
        if source.IsFromMe:
            return
        state = {1: "composing", 2: "paused"}.get(int(ev.State))
        if state is None:
            return
        self.emit(EventKind.CHAT_PRESENCE, chat=_jid_string(nz.JIDToNonAD(source.Chat)),
                  sender=_jid_string(nz.JIDToNonAD(source.Sender)) if source.HasField("Sender") else None,
                  state=state, media="audio" if int(ev.Media) == 2 else "text")

    def _on_receipt(self, run, client, ev):
        with self._mu:
            if run.client is not client:
                return
        nz = _nz()
        types = nz.proto.Receipt
        status = {types.DELIVERED: "delivered", types.READ: "read", types.PLAYED: "read"}.get(ev.Type)
        if status is None:  # our own devices' read marks, retries, server errors, ...
            return
        source = ev.MessageSource
        self.emit(EventKind.RECEIPT, ids=list(ev.MessageIDs), chat=_jid_string(nz.JIDToNonAD(source.Chat)),
                  sender=_jid_string(nz.JIDToNonAD(source.Sender)) if source.HasField("Sender") else None,
                  status=status, timestamp=ev.Timestamp)

    # --- inbound media ---

    def _download_then_emit(self, client, message, data):
        """MESSAGE with the media's bytes (`media`) or why there are none (`media_error`). The download runs on
        this provider's media thread: a handler that waited on the network would stall whatsmeow."""
        kind = data["type"]
        media = getattr(_unwrap(message), MEDIA_KINDS[kind])
        limit = _media_limit(kind)
        if not (media.directPath or media.URL) or not media.mediaKey:
            data["media_error"] = "no_media: the message carries no downloadable media"
        elif media.fileLength > limit:
            data["media_error"] = f"media_too_large: {media.fileLength} bytes, over the {limit}-byte limit"
        else:
            with self._mu:
                if self._download_queue is None:
                    self._download_queue = queue.Queue()
                    threading.Thread(target=self._download_loop, args=(self._download_queue,), daemon=True,
                                     name=f"neonize-media-{self.session_key}").start()
                self._download_queue.put((client, message, data, limit))
            return
        self.emit(EventKind.MESSAGE, **data)

    def _download_loop(self, jobs):
        while True:
            try:
                client, message, data, limit = jobs.get(timeout=MEDIA_THREAD_IDLE_S)
            except queue.Empty:
                with self._mu:
                    if jobs.empty():
                        self._download_queue = None
                        return
                continue
            with self._mu:
                # Go must not be asked about a client that was stopped (its handle may be gone).
                current = self._run is not None and self._run.client is client and self._connected
            if not current:
                data["media_error"] = "download_failed: the session stopped before the media was downloaded"
            else:
                try:
                    content = client.download_any(message)
                except Exception as exc:
                    data["media_error"] = f"download_failed: {exc or exc.__class__.__name__}"[:500]
                else:
                    if len(content) > limit:
                        data["media_error"] = f"media_too_large: {len(content)} bytes, over the {limit}-byte limit"
                    else:
                        data["media"] = content
            self.emit(EventKind.MESSAGE, **data)

    # --- the store ---

    def _prepare_store(self, run):
        """Once per start: a store directory Go can use (a `file:` URI: no ?, # or %). Emits what is wrong."""
        path = self.store_file
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as exc:
            self.emit(EventKind.ERROR, code="store_unavailable", fatal=True,
                      message=f"cannot create the device store directory: {exc}")
            return False
        if any(ch in path for ch in "?#%"):
            self.emit(EventKind.ERROR, code="store_unavailable", fatal=True,
                      message=f"the store path must not contain ?, # or %: {path}")
            return False
        return True

    def _check_store(self, run):
        """Before every connect: None if Go may open the store, else ("terminal"|"failed", reason). Go aborts
        the process when asked to resume a device its store lacks, and only reports garbage on connect."""
        try:
            devices = self._stored_devices(self.store_file)
        except sqlite3.Error as exc:
            if not _is_store_error(str(exc)):  # busy, I/O: try again later
                run.last_error = str(exc)
                return "failed", f"could not read the device store: {exc}"
            with self._mu:
                run.terminal = "store"
            self.emit(EventKind.ERROR, code="store_corrupt", fatal=True,
                      message=f"the device store is unreadable ({exc}); unlink the phone and link again")
            return "terminal", "store"
        with self._mu:
            identity = self.identity
            missing = identity is not None and (identity.jid_user, int(identity.jid_device)) not in devices
            if missing:
                run.terminal = "logged_out"
                self.identity = None
        if missing:
            self.emit(EventKind.LOGGED_OUT, reason="device not linked")
            return "terminal", "logged_out"
        return None

    @staticmethod
    def _stored_devices(path):
        """{(user, device)} of the devices in a store file (empty when there is none); sqlite3.Error if the file
        is not a readable database."""
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return set()
        con = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=STORE_READ_TIMEOUT_S)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "whatsmeow_device" not in tables:
                return set()
            devices = set()
            for (jid,) in con.execute("SELECT jid FROM whatsmeow_device"):
                user_part = str(jid).split("@", 1)[0]
                user, _, device = user_part.partition(":")
                devices.add((user.split(".", 1)[0], int(device or 0)))
            return devices
        finally:
            con.close()

    def _delete_store(self):
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.remove(self.store_file + suffix)
            except FileNotFoundError:
                pass
            except OSError:
                logger.exception("session %s: could not delete %s", self.session_key, self.store_file + suffix)

    # --- sending ---

    def _recipient(self, to):
        nz = _nz()
        to = str(to or "").strip()
        if "@" in to:
            user, _, server = to.partition("@")
            user = user.split(":", 1)[0]
            if user and server in ("s.whatsapp.net", "g.us", "lid", "newsletter", "broadcast"):
                return nz.proto.JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)
            raise ProviderError("invalid_recipient", f"not a WhatsApp address: {to!r}")
        try:
            return nz.build_jid(phone_digits(to))
        except ProviderError:
            raise ProviderError("invalid_recipient", f"not a phone number or WhatsApp address: {to!r}") from None

    def _build_message(self, nz, client, message, jid):
        wa = nz.wa
        kind = message.type
        context = self._quote(nz, message, jid)
        if kind == "text":
            if not message.text:
                raise ProviderError("invalid_message", "a text message needs text")
            if context is None:
                return wa.Message(conversation=message.text)
            return wa.Message(extendedTextMessage=wa.ExtendedTextMessage(text=message.text, contextInfo=context))
        if kind == "reaction":
            if not message.reaction_to:
                raise ProviderError("invalid_message", "a reaction needs the id of the message it reacts to")
            return wa.Message(reactionMessage=wa.ReactionMessage(
                key=self._reacted_key(nz, message, jid), text=message.reaction,
                senderTimestampMS=int(time.time() * 1000)))
        if kind in ("image", "document", "audio", "video"):
            if not message.media:
                raise ProviderError("invalid_message", f"a {kind} message needs the file's bytes")
            # Each builder uploads first (network, under the Go lock), then builds the message.
            if kind == "image":
                msg = client.build_image_message(message.media, caption=message.caption or None)
                inner = msg.imageMessage
            elif kind == "document":
                msg = client.build_document_message(message.media, caption=message.caption or None,
                                                    title=message.filename or None,
                                                    filename=message.filename or None,
                                                    mimetype=message.mimetype or None)
                inner = msg.documentMessage
            else:
                msg, inner = self._build_audio_video(nz, client, message)
        elif kind == "location":
            if message.latitude is None or message.longitude is None:
                raise ProviderError("invalid_message", "a location needs latitude and longitude")
            msg = wa.Message(locationMessage=wa.LocationMessage(degreesLatitude=message.latitude,
                                                                degreesLongitude=message.longitude,
                                                                name=message.text or None))
            inner = msg.locationMessage
        elif kind == "contact":
            if not message.contact_vcard:
                raise ProviderError("invalid_message", "a contact needs a vCard")
            found = re.search(r"^FN[^:\r\n]*:(.*)$", message.contact_vcard, re.MULTILINE)
            name = found.group(1).strip() if found else (message.text or "Contact")
            msg = wa.Message(contactMessage=wa.ContactMessage(displayName=name, vcard=message.contact_vcard))
            inner = msg.contactMessage
        else:
            raise ProviderError("unsupported", f"sending {kind} messages is not supported by the neonize provider")
        if context is not None:
            inner.contextInfo.MergeFrom(context)
        return msg

    @staticmethod
    def _build_audio_video(nz, client, message):
        """neonize's build_audio_message / build_video_message read duration and thumbnail with ffmpeg, which
        this installation does not have: upload through neonize and build the message without them (WhatsApp
        shows the length once played)."""
        import magic
        from neonize.utils.enum import MediaType

        kind = message.type
        mimetype = (message.mimetype or magic.from_buffer(message.media[:65536], mime=True) or "").split(";")[0]
        allowed = AUDIO_MIMETYPES if kind == "audio" else VIDEO_MIMETYPES
        if mimetype not in allowed:
            raise ProviderError("unsupported", f"WhatsApp does not play {mimetype or 'this file'} as {kind}")
        upload = client.upload(message.media, MediaType.MediaAudio if kind == "audio" else MediaType.MediaVideo)
        common = dict(URL=upload.url, directPath=upload.DirectPath, fileEncSHA256=upload.FileEncSHA256,
                      fileLength=upload.FileLength, fileSHA256=upload.FileSHA256, mediaKey=upload.MediaKey)
        if kind == "audio":
            voice_note = mimetype == "audio/ogg"  # WhatsApp plays ogg/opus as a voice note
            msg = nz.wa.Message(audioMessage=nz.wa.AudioMessage(
                mimetype="audio/ogg; codecs=opus" if voice_note else mimetype, PTT=voice_note, **common))
            return msg, msg.audioMessage
        msg = nz.wa.Message(videoMessage=nz.wa.VideoMessage(mimetype=mimetype, caption=message.caption or None,
                                                            **common))
        return msg, msg.videoMessage

    def _own_jid(self):
        identity = self.identity
        return f"{identity.jid_user}@s.whatsapp.net" if identity is not None else ""

    def _quoted_author(self, message, jid):
        """(from_me, author JID or "") of the message a reply quotes or a reaction targets. Unknown authors in a
        1:1 chat are the other side (the chat); in a group they stay unknown."""
        from_me = bool(message.quoted_from_me)
        if from_me:
            return True, self._own_jid()
        author = message.quoted_sender
        if not author and jid.Server == "s.whatsapp.net":
            author = f"{jid.User}@{jid.Server}"
        return False, author

    def _quote(self, nz, message, jid):
        if not message.reply_to or message.type == "reaction":
            return None
        _, author = self._quoted_author(message, jid)
        quoted_text = message.quoted_text
        return nz.wa.ContextInfo(stanzaID=message.reply_to, participant=author or None,
                                 quotedMessage=nz.wa.Message(conversation=quoted_text) if quoted_text else None)

    def _reacted_key(self, nz, message, jid):
        from neonize.proto.waCommon.WACommon_pb2 import MessageKey

        from_me, author = self._quoted_author(message, jid)
        group = jid.Server == "g.us"
        return MessageKey(remoteJID=f"{jid.User}@{jid.Server}", fromMe=from_me, ID=message.reaction_to,
                          participant=author if group and author else None)


def stop_all():
    """Stop every provider of this process (a host shutting down): connect() runs Go on neonize's non-daemon
    threads, which keep the interpreter alive until their clients are stopped."""
    for provider in list(_providers):
        try:
            provider.stop()
        except Exception:
            logger.exception("session %s did not stop cleanly", provider.session_key)
