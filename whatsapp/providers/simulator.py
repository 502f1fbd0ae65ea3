"""A stand-in for WhatsApp's side of a linked device: in-process, thread-safe, no network, no database.

`SimulatorProvider` behaves like the neonize provider from the session host's point of view (same events, same
errors, a device store that survives a process restart) so that demos, tests and benchmarks run the whole journey
without a phone. It runs inside the session host, where `emit()` is its only way out.

How it behaves (times from `SimulatorTiming`, limits from `ProviderSettings`):
- `start()` without identity pairs a new device: a QR code at once (valid 60 s), a new ref every 20 s after that,
  `max_qr_attempts` codes in all, then QR_EXPIRED. `start(pairing_phone=…)` / `request_pairing_code()` show an
  8-character code "ABCD-EFGH" instead; it is valid for the same window.
- `start()` with identity resumes the device saved in `<store_dir>/<quoted key>.simulator.json` (written on a scan,
  deleted on logout — the counterpart of neonize's per-session store): CONNECTED after the connect delay, or
  LOGGED_OUT "device not linked" when the store does not hold that device.
- `send()` returns "SIM<hex>" and delivers RECEIPT delivered, then read.
- WhatsApp's offline queue (simulator_server): receipts that are due and inbound messages are kept on "WhatsApp's
  side" (files in the store dir, shared by every host) until the host acknowledges them (`ProviderEvent.ack`,
  called once the event is committed). Whatever is not acknowledged — due while the session was offline, or
  emitted to a host that died before committing it — is delivered again when the session connects, on any host,
  in due order. A message from a contact to a linked device that is offline waits there too.

- `send_chat_presence()` ("composing" / "paused") is what the contact's phone would show: kept per chat in
  `<store_dir>/<quoted key>.presence.json` (a session runs on one host at a time: one writer), read by
  `chat_presence_seen()` — "typing…" while the last state is composing and younger than TYPING_SHOWN_S.

Controls (what the test-helper API calls): `simulate_scan`, `simulate_inbound`, `simulate_disconnect`,
`simulate_logout`, `simulate_contacts` (the address book that `fetch_contacts` / `fetch_groups` read). Failure
injection: `fail_next_send`, `set_unreachable`, `corrupt_store`. A control that does not fit the session's state
raises ProviderError with a code ("not_pairing", "not_connected", "not_linked", …).

Time: every delay goes through a scheduler with `call_later(delay, fn) -> timer` (`timer.cancel()`) and `now()`.
By default all simulated sessions of a process share one daemon thread (`ThreadScheduler`), so a thousand idle
sessions cost no threads; tests pass a `ManualScheduler` and move time with `advance()`. Callbacks and control
methods serialize on the provider's lock, and events are emitted under it, so their order is the order of the
state changes (emit only enqueues, so holding the lock there costs nothing).

Finding a provider: every instance registers itself in `simulated_sessions` (session key → provider, weakly held,
the newest instance for a key wins); `get_simulated_session(key)` is how the host's test-helper commands find it.
"""
import base64
import heapq
import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from urllib.parse import quote

from . import simulator_outbox, simulator_server
from .base import (
    CHAT_PRESENCE_STATES,
    DeviceIdentity,
    EventKind,
    OutgoingMessage,
    ProviderError,
    ProviderEvent,
    SessionProvider,
)

logger = logging.getLogger(__name__)

# whatsmeow's pairing-code alphabet: Crockford-like base32 without 0, O, I and U, which read alike.
PAIR_CODE_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
MESSAGE_TYPES = ("text", "image", "document", "audio", "video", "location", "contact", "reaction")
STORE_SUFFIX = ".simulator.json"
PRESENCE_SUFFIX = ".presence.json"
# WhatsApp stops showing "typing…" by itself when no new composing state comes within about this long.
TYPING_SHOWN_S = 25.0
STORE_VERSION = 1
MAX_RETRY_DELAY_S = 60.0


def _env_seconds(name, default):
    """Receipt delays for benchmarks and demos (WHATSAPP_SIMULATOR_DELIVERED_SECONDS / _READ_SECONDS; "never"
    for no read receipt), read once when the module loads, in the session host only."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    return None if value.lower() == "never" else float(value)


@dataclass(frozen=True)
class SimulatorTiming:
    """Delays in seconds. The defaults are WhatsApp's; tests shrink them or drive a ManualScheduler."""

    first_qr_s: float = 60.0  # lifetime of the first QR code of a pairing attempt
    qr_rotation_s: float = 20.0  # lifetime of every later one
    delivered_s: float = _env_seconds("WHATSAPP_SIMULATOR_DELIVERED_SECONDS", 1.0)  # send → RECEIPT delivered
    read_s: float | None = _env_seconds("WHATSAPP_SIMULATOR_READ_SECONDS", 3.0)  # send → RECEIPT read (None: never)
    connect_s: float = 0.2  # start / scan / reconnect → connected (or the first QR)


# --- schedulers -------------------------------------------------------------------------------------------------


class Timer:
    """A scheduled call; `cancel()` is safe from any thread, before or after it ran."""

    __slots__ = ("fn", "cancelled", "_on_cancel")

    def __init__(self, fn, on_cancel=None):
        self.fn = fn
        self.cancelled = False
        self._on_cancel = on_cancel

    def cancel(self):
        if not self.cancelled:
            self.cancelled = True
            if self._on_cancel:
                self._on_cancel()


class ThreadScheduler:
    """Runs callbacks on one daemon thread (started on first use) from a heap ordered by due time.

    A callback that raises is logged and does not stop the thread; callbacks should be short (they only emit).
    """

    def __init__(self, name="whatsapp-simulator-clock"):
        self._name = name
        self._cond = threading.Condition()
        self._heap = []
        self._seq = itertools.count()
        self._cancelled = 0
        self._thread = None
        self._closed = False

    def now(self):
        return time.monotonic()

    def wall(self):
        return time.time()

    def call_later(self, delay, fn):
        timer = Timer(fn, self._count_cancelled)
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is closed")
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return timer

    def close(self):
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()

    def _count_cancelled(self):
        # Cancelled timers stay in the heap until due; rebuild it when they become most of it (many restarts).
        with self._cond:
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _loop(self):
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        self._cancelled = max(0, self._cancelled - 1)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        timer = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(wait)
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception:
                logger.exception("simulator timer failed")


class ManualScheduler:
    """A clock that moves only when told (`advance`), for deterministic tests. Callbacks run on the caller's
    thread, in due order (ties in scheduling order); exceptions propagate."""

    def __init__(self):
        self._lock = threading.Lock()
        self._heap = []
        self._seq = itertools.count()
        self._now = 0.0
        self._wall_base = time.time()

    def now(self):
        return self._now

    def wall(self):
        """Epoch seconds that move with the manual clock (due times kept on WhatsApp's side use them)."""
        return self._wall_base + self._now

    def call_later(self, delay, fn):
        timer = Timer(fn)
        with self._lock:
            heapq.heappush(self._heap, (self._at(self._now + max(0.0, delay)), next(self._seq), timer))
        return timer

    @staticmethod
    def _at(t):
        # Nanosecond steps, so that advance(0.1) ten times reaches a timer set for 1.0 s exactly.
        return round(t, 9)

    def pending(self):
        """How many timers are waiting (cancelled ones excluded)."""
        with self._lock:
            return sum(1 for entry in self._heap if not entry[2].cancelled)

    def advance(self, seconds):
        """Move the clock forward, running every timer that falls due on the way (including ones they add)."""
        target = self._at(self._now + seconds)
        while True:
            with self._lock:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap or self._heap[0][0] > target:
                    self._now = target
                    return
                due, _, timer = heapq.heappop(self._heap)
                self._now = max(self._now, due)
            timer.fn()


_default_scheduler = None
_default_scheduler_lock = threading.Lock()


def default_scheduler():
    """The process-wide ThreadScheduler shared by every simulated session that was given none."""
    global _default_scheduler
    with _default_scheduler_lock:
        if _default_scheduler is None:
            _default_scheduler = ThreadScheduler()
        return _default_scheduler


# --- registry ---------------------------------------------------------------------------------------------------

simulated_sessions = weakref.WeakValueDictionary()  # session key → SimulatorProvider (newest instance)
_registry_lock = threading.Lock()


def get_simulated_session(session_key):
    """The simulated session with that key in this process, or ProviderError("unknown_session")."""
    with _registry_lock:
        provider = simulated_sessions.get(session_key)
    if provider is None:
        raise ProviderError("unknown_session", f"no simulated session {session_key!r} in this process")
    return provider


# --- helpers ----------------------------------------------------------------------------------------------------


def store_path(store_dir, session_key):
    """`<store_dir>/<session key, percent-quoted>.simulator.json` — quoting keeps distinct keys distinct
    ("t_a:1" and "t_a_1" would collide if both were squashed to underscores)."""
    return os.path.join(store_dir, quote(session_key, safe="") + STORE_SUFFIX)


def presence_path(store_dir, session_key):
    return os.path.join(store_dir, quote(session_key, safe="") + PRESENCE_SUFFIX)


def chat_presence_seen(store_dir, session_key, *, now=None):
    """What the contacts' phones show of the session's typing: [{chat, state, at, typing}], latest first."""
    try:
        with open(presence_path(store_dir, session_key), encoding="utf-8") as handle:
            chats = json.load(handle)
    except (OSError, ValueError):
        return []
    now = time.time() if now is None else now
    seen = [{"chat": chat, "state": entry.get("state"), "at": entry.get("at"),
             "typing": entry.get("state") == "composing" and now - float(entry.get("at") or 0) < TYPING_SHOWN_S}
            for chat, entry in chats.items() if isinstance(entry, dict)]
    return sorted(seen, key=lambda entry: entry["at"] or 0, reverse=True)


def phone_digits(phone):
    """"+1 (555) 010-0001" → "15550100001"; ProviderError("invalid_phone") unless 7–15 digits (E.164)."""
    digits = re.sub(r"[\s().+-]", "", str(phone or ""))
    if not re.fullmatch(r"[0-9]{7,15}", digits):
        raise ProviderError("invalid_phone", f"not a phone number in international format: {phone!r}")
    return digits


def new_pair_code():
    chars = "".join(secrets.choice(PAIR_CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def _b64(nbytes):
    return base64.b64encode(secrets.token_bytes(nbytes)).decode()


ADDRESS_BOOK_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing")


def simulated_address_book(session_key):
    """A few contacts and one group, the same for a session key every time (numbers in the +1 555 01xx
    fiction range); the second contact is also known by a hidden @lid identity, as WhatsApp reports some."""
    seed = sum(session_key.encode()) % 50
    contacts = []
    for n, name in enumerate(ADDRESS_BOOK_NAMES):
        digits = f"1555010{seed + n * 10:04d}"[-11:]
        lid = f"{9000 + seed + n}{digits[-6:]}@lid" if n == 1 else None
        contacts.append({"jid": f"{digits}@s.whatsapp.net", "phone": f"+{digits}", "name": name,
                         "push_name": name.split()[0], "lid": lid})
    members = [{"jid": c["jid"], "phone": c["phone"], "is_admin": n == 0} for n, c in enumerate(contacts)]
    groups = [{"jid": f"1203630{seed:04d}1234567@g.us", "name": "Simulated team", "topic": "Made up by the simulator",
               "participants": members}]
    return contacts, groups


def _new_message_id():
    return "SIM" + secrets.token_hex(8).upper()


INBOUND_MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")


def _check_outgoing(message):
    """Refuse what WhatsApp's servers would refuse: a message missing what its type needs."""
    kind = message.type
    if kind == "text" and not message.text:
        raise ProviderError("invalid_message", "a text message needs text")
    if kind in ("image", "document", "audio", "video") and (not message.media or not message.mimetype):
        raise ProviderError("invalid_message", f"a {kind} message needs the file's bytes and mimetype")
    if kind == "location" and (message.latitude is None or message.longitude is None
                               or not -90 <= message.latitude <= 90 or not -180 <= message.longitude <= 180):
        raise ProviderError("invalid_message", "a location needs a latitude and longitude in range")
    if kind == "contact" and not message.contact_vcard.upper().startswith("BEGIN:VCARD"):
        raise ProviderError("invalid_message", "a contact needs a vCard")
    if kind == "reaction" and not message.reaction_to:
        raise ProviderError("invalid_message", "a reaction needs the id of the message it reacts to")


def inbound_data(from_phone, text="", *, type="text", media=None, mimetype="", filename="", caption="",
                 latitude=None, longitude=None, media_error=""):
    """The MESSAGE event's data for a message a contact sends (see SimulatorProvider.simulate_inbound), with a new
    WhatsApp id; ProviderError for what WhatsApp would refuse."""
    digits = phone_digits(from_phone)
    if isinstance(media, str):
        media = base64.b64decode(media)
    data = {"type": type, "text": text}
    if type in INBOUND_MEDIA_TYPES:
        if media is None and not media_error:
            raise ProviderError("invalid_message", f"an inbound {type} needs its media bytes")
        data.update(caption=caption, mimetype=mimetype, filename=filename)
        data.update({"media_error": media_error} if media_error else {"media": media})
    elif type == "location":
        if latitude is None or longitude is None:
            raise ProviderError("invalid_message", "an inbound location needs latitude and longitude")
        data.update(latitude=float(latitude), longitude=float(longitude))
    elif type != "text":
        raise ProviderError("unsupported_type", f"inbound {type!r} messages cannot be simulated")
    jid = f"{digits}@s.whatsapp.net"
    return {"id": _new_message_id(), "chat": jid, "sender": jid, "sender_phone": f"+{digits}", "from_me": False,
            "timestamp": int(time.time()), **data}


def accept_inbound(store_dir, session_key, data, *, due=None):
    """WhatsApp's server takes a contact's message (`inbound_data`) for a linked device, whether or not any host
    runs it now: logged (simulator_outbox.record_inbound) and kept until the device acknowledges it, delivered on
    its next connection if it is offline. Returns the kept item's (name, item)."""
    simulator_outbox.record_inbound(store_dir, session_key=session_key, message_id=data["id"], chat=data["chat"])
    item = {"kind": "message", "id": data["id"], "due": time.time() if due is None else due, "data": data}
    return simulator_server.put(store_dir, session_key, item), item


class _StoreCorrupt(Exception):
    pass


# --- the provider -----------------------------------------------------------------------------------------------

# States. "Running" ones have (or wait for) a connection; the others wait for start().
IDLE, CONNECTING, PAIRING_QR, PAIRING_CODE, CONNECTED, RECONNECTING = (
    "idle", "connecting", "pairing_qr", "pairing_code", "connected", "reconnecting")
STOPPED, QR_EXPIRED, LOGGED_OUT, FAILED = "stopped", "qr_expired", "logged_out", "error"
SILENT = "silent"  # the connection died without a word: no events, not connected (see simulate_silence)
RUNNING_STATES = frozenset({CONNECTING, PAIRING_QR, PAIRING_CODE, CONNECTED, RECONNECTING, SILENT})


class SimulatorProvider(SessionProvider):
    name = "simulator"
    timing = SimulatorTiming()
    scheduler = None  # None: the process-wide ThreadScheduler

    def __init__(self, session_key, *, emit, settings, store_dir, identity=None, timing=None, scheduler=None):
        super().__init__(session_key, emit=emit, settings=settings, store_dir=store_dir, identity=identity)
        if timing is not None:
            self.timing = timing
        self._scheduler = scheduler or self.scheduler or default_scheduler()
        self._lock = threading.RLock()
        self._state = IDLE
        self._run = 0  # bumped by start/stop/logout: a timer from an older run does nothing
        self._timers = set()
        self._pairing_phone = None  # digits, when pairing by code
        self._pairing_deadline = None
        self._qr_timer = None
        self._qr_keys = None
        self._linked = None  # the store's contents while connected (phone, push_name, jid_*)
        self._fail_next_send = None
        self._unreachable = False
        self._address_book = None  # (contacts, groups) set by simulate_contacts; None: simulated_address_book()
        self._owed = {}  # name -> item: what WhatsApp's side keeps for this device, as far as this instance knows
        with _registry_lock:
            simulated_sessions[session_key] = self

    # --- the provider interface ---

    @property
    def is_connected(self):
        return self._state == CONNECTED

    @property
    def status(self):
        """The simulated state: idle, connecting, pairing_qr, pairing_code, connected, reconnecting, stopped,
        qr_expired, logged_out or error."""
        return self._state

    @property
    def store_file(self):
        return store_path(self.store_dir, self.session_key)

    def start(self, *, pairing_phone=None):
        """Connect (resume `identity`, or pair a new device by QR or, with `pairing_phone`, by code).
        With an identity, `pairing_phone` is ignored, as a linked device does not pair again."""
        digits = phone_digits(pairing_phone) if pairing_phone else None
        with self._lock:
            if self._state in RUNNING_STATES:
                raise ProviderError("already_running", "the session is already running; stop it first")
            self._new_run()
            self._pairing_phone = digits
            self._state = CONNECTING
            self._later(self.timing.connect_s, self._connect_attempt, 0)

    def stop(self):
        with self._lock:
            self._new_run()
            if self._state not in (QR_EXPIRED, LOGGED_OUT, FAILED):
                self._state = STOPPED

    def logout(self):
        self._log_out("logged out")

    def request_pairing_code(self, phone):
        digits = phone_digits(phone)
        with self._lock:
            if self.identity is not None:
                raise ProviderError("already_linked", "the session is linked to a phone; unlink it to link another")
            if self._state not in RUNNING_STATES:
                self.start(pairing_phone=digits)
            elif self._state in (PAIRING_QR, PAIRING_CODE):
                self._cancel(self._qr_timer)
                self._show_pair_code(digits)
            else:  # still connecting: the code comes when the connection is up
                self._pairing_phone = digits

    def new_message_id(self):
        """The simulator, like whatsmeow (SendRequestExtra.ID), lets the sender choose the id."""
        return _new_message_id()

    @classmethod
    def accepted(cls, store_dir, session_key, message_ids):
        """What "WhatsApp" holds for this session among `message_ids`: its outbox log, which survives the host."""
        wanted = set(message_ids)
        if not wanted:
            return set()
        return {r["id"] for r in simulator_outbox.read(store_dir)
                if r.get("session") == session_key and r.get("id") in wanted}

    def send(self, to, message: OutgoingMessage, message_id=None):
        chat = self._chat_jid(to)
        if message.type not in MESSAGE_TYPES:
            raise ProviderError("unsupported_type", f"message type {message.type!r} is not supported")
        _check_outgoing(message)
        with self._lock:
            if self._state != CONNECTED:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
            if self._fail_next_send:
                code, self._fail_next_send = self._fail_next_send, None
                raise ProviderError(code, f"simulated send failure ({code})")
            message_id = message_id or _new_message_id()
            # Accepted (the outbox line), then owed a delivery receipt: a kill between the two writes (a few µs)
            # is the one window in which WhatsApp has the message but the receipt is not kept.
            simulator_outbox.record(self.store_dir, session_key=self.session_key, message_id=message_id, chat=chat,
                                    type=message.type, text=message.text or message.caption)
            self._owe({"kind": "receipt", "id": message_id, "chat": chat, "status": "delivered",
                       "due": self._wall() + self.timing.delivered_s})
            return message_id

    def send_chat_presence(self, to, state):
        if state not in CHAT_PRESENCE_STATES:
            raise ProviderError("invalid_presence", f"chat presence is one of {', '.join(CHAT_PRESENCE_STATES)}")
        chat = self._chat_jid(to)
        with self._lock:
            if self._state != CONNECTED:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
            path = presence_path(self.store_dir, self.session_key)
            try:
                with open(path, encoding="utf-8") as handle:
                    chats = json.load(handle)
            except (OSError, ValueError):
                chats = {}
            chats[chat] = {"state": state, "at": self._wall()}
            temporary = f"{path}.{os.getpid()}.tmp"
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(chats, handle)
            os.replace(temporary, path)

    def fetch_contacts(self):
        """The phone's address book: simulated_address_book() for this session, or what simulate_contacts set."""
        with self._lock:
            if self._state != CONNECTED:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
            contacts, _ = self._address_book or simulated_address_book(self.session_key)
            return [dict(contact) for contact in contacts]

    def fetch_groups(self):
        with self._lock:
            if self._state != CONNECTED:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
            _, groups = self._address_book or simulated_address_book(self.session_key)
            return [{**group, "participants": [dict(p) for p in group.get("participants", [])]} for group in groups]

    # --- controls (the test-helper API) ---

    def simulate_contacts(self, contacts, groups=()):
        """Replace what the phone's address book holds (the next fetch_contacts / fetch_groups return these)."""
        with self._lock:
            self._address_book = ([dict(c) for c in contacts], [dict(g) for g in groups])

    def simulate_scan(self, phone, push_name="Simulated user"):
        """The phone scans the QR code (or enters the pairing code): the device is linked to `phone`.
        Emits PAIRED now and CONNECTED after the connect delay; returns the new identity."""
        digits = phone_digits(phone)
        with self._lock:
            if self._state not in (PAIRING_QR, PAIRING_CODE):
                raise ProviderError("not_pairing", "no QR code or pairing code is waiting for a scan")
            if self._state == PAIRING_CODE and digits != self._pairing_phone:
                raise ProviderError("wrong_phone", f"the pairing code was issued for +{self._pairing_phone}")
            identity = DeviceIdentity(jid_user=digits, jid_device=secrets.randbelow(60) + 1)
            linked = {"jid_user": identity.jid_user, "jid_device": identity.jid_device, "phone": f"+{digits}",
                      "push_name": push_name}
            self._write_store(linked)
            self._cancel(self._qr_timer)
            self._new_run()  # drops the pairing deadline
            self.identity = identity
            self._state = CONNECTING
            self.emit(EventKind.PAIRED, **linked)
            self._later(self.timing.connect_s, self._connect_attempt, 0)
            return identity

    def simulate_inbound(self, from_phone, text="", **options):
        """A contact sends the linked number a message; returns its id. Text by default; `type` image, document,
        audio, video or sticker carries `media` (bytes, or base64 text as a JSON command brings it) as WhatsApp's
        download would deliver it; location carries latitude/longitude (`text` is its name). `media_error`
        plays a download that failed. A linked device that is offline gets it when it connects."""
        data = inbound_data(from_phone, text, **options)
        with self._lock:
            # WhatsApp keeps a message for a linked device that is offline; a device never linked gets none.
            if self.identity is None:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
            name, item = accept_inbound(self.store_dir, self.session_key, data, due=self._wall())
            self._owed[name] = item
            if self._state == CONNECTED:
                self._schedule(name, item)
            return data["id"]

    def simulate_contact_typing(self, from_phone, state="composing", media="text"):
        """A contact types (composing) or stops (paused) in their chat with the linked number. WhatsApp tells a
        linked device only while it is marked available (set_available) and connected; otherwise nothing comes.
        Returns whether it was delivered."""
        if state not in CHAT_PRESENCE_STATES or media not in ("text", "audio"):
            raise ProviderError("invalid_presence", f"chat presence is one of {', '.join(CHAT_PRESENCE_STATES)}")
        digits = phone_digits(from_phone)
        with self._lock:
            if self._state != CONNECTED or not self.available:
                return False
        jid = f"{digits}@s.whatsapp.net"
        self.emit(EventKind.CHAT_PRESENCE, chat=jid, sender=jid, state=state, media=media)
        return True

    def simulate_disconnect(self, reason="connection lost"):
        """The connection drops; like whatsmeow the session reconnects by itself after the reconnect delay."""
        with self._lock:
            if self._state != CONNECTED:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
            self._connection_lost(reason, retries_done=0)

    def simulate_silence(self):
        """The connection dies silently (a zombie): no event, no reconnect, no receipts; only is_connected
        tells. The session host's watchdog must notice and restart the client."""
        with self._lock:
            if self._state != CONNECTED:
                raise ProviderError("not_connected", "the session is not connected to WhatsApp")
            self._new_run()
            self._state = SILENT

    def simulate_logout(self):
        """The device is removed from the phone's "Linked devices": LOGGED_OUT, store deleted."""
        with self._lock:
            if self.identity is None or self._state not in RUNNING_STATES:
                raise ProviderError("not_linked", "the session is not running with a linked device")
            self._log_out("logged out from the phone")

    def fail_next_send(self, code="send_failed"):
        with self._lock:
            self._fail_next_send = code

    def set_unreachable(self, unreachable=True):
        """While unreachable, every connection attempt fails (DISCONNECTED with retries, then ERROR)."""
        with self._lock:
            self._unreachable = bool(unreachable)

    def corrupt_store(self):
        """Overwrite the device store with garbage: every start fails with ERROR store_corrupt (fatal) until
        logout() deletes it, as with a damaged neonize store."""
        with self._lock:
            os.makedirs(self.store_dir, exist_ok=True)
            with open(self.store_file, "wb") as f:
                f.write(b"\x00\x13not a device store")

    # --- connection ---

    def _connect_attempt(self, retries_done):
        try:
            stored = self._read_store()
        except _StoreCorrupt as exc:
            return self._fail("store_corrupt",
                              f"the device store is unreadable ({exc}); unlink the phone and link again")
        if self._unreachable:
            return self._connection_lost("cannot reach WhatsApp", retries_done)
        if self.identity is None:
            return self._begin_pairing()
        if stored is None or (stored["jid_user"], stored["jid_device"]) != (
                self.identity.jid_user, self.identity.jid_device):
            self.identity = None
            self._new_run()
            self._state = LOGGED_OUT
            simulator_server.forget(self.store_dir, self.session_key)
            self._owed = {}
            self.emit(EventKind.LOGGED_OUT, reason="device not linked")
            return
        self._linked = stored
        self._state = CONNECTED
        self.emit(EventKind.CONNECTED, phone=stored["phone"], push_name=stored["push_name"],
                  jid_user=stored["jid_user"], jid_device=stored["jid_device"])
        # WhatsApp hands the new connection everything not acknowledged: what fell due while offline now, in
        # order; what is not due yet when it falls due.
        self._owed = dict(simulator_server.compact(self.store_dir, self.session_key))
        for name, item in list(self._owed.items()):
            self._schedule(name, item)

    def _connection_lost(self, reason, retries_done):
        """Report a lost or failed connection and schedule the next attempt, or give up after the last one."""
        limit = self.settings.max_reconnect_attempts
        if retries_done >= limit:
            if reason == "cannot reach WhatsApp":
                return self._fail("unreachable", f"cannot reach WhatsApp after {retries_done + 1} attempts")
            self._new_run()
            self._state = STOPPED
            self.emit(EventKind.DISCONNECTED, reason=reason, will_retry=False, retry_in=None, attempt=retries_done)
            return
        attempt = retries_done + 1
        delay = self._retry_delay(attempt)
        self._state = RECONNECTING
        self.emit(EventKind.DISCONNECTED, reason=reason, will_retry=True, retry_in=delay, attempt=attempt)
        self._later(delay, self._connect_attempt, attempt)

    def _retry_delay(self, attempt):
        base = self.settings.reconnect_delay_ms / 1000
        return min(base * 2 ** (attempt - 1), max(base, MAX_RETRY_DELAY_S))

    def _fail(self, code, message):
        self._new_run()
        self._state = FAILED
        self.emit(EventKind.ERROR, code=code, message=message, fatal=True)

    def _log_out(self, reason):
        with self._lock:
            self._new_run()
            try:
                os.remove(self.store_file)
            except FileNotFoundError:
                pass
            simulator_server.forget(self.store_dir, self.session_key)
            self._owed = {}
            self.identity = None
            self._state = LOGGED_OUT
            self.emit(EventKind.LOGGED_OUT, reason=reason)

    # --- pairing ---

    def _begin_pairing(self):
        t = self.timing
        attempts = max(1, self.settings.max_qr_attempts)
        window = t.first_qr_s + t.qr_rotation_s * (attempts - 1)
        self._pairing_deadline = self._now() + window
        self._later(window, self._pairing_expired, attempts)
        # The keys are the device's for the whole attempt; only the server's ref changes with each code.
        self._qr_keys = ",".join(_b64(32) for _ in range(3))
        if self._pairing_phone:
            self._show_pair_code(self._pairing_phone)
        else:
            self._state = PAIRING_QR
            self._show_qr(1, attempts)

    def _show_qr(self, attempt, attempts):
        expires_in = self.timing.first_qr_s if attempt == 1 else self.timing.qr_rotation_s
        self.emit(EventKind.QR, code=f"2@{_b64(24)},{self._qr_keys}", expires_in=expires_in, attempt=attempt,
                  max_attempts=attempts)
        if attempt < attempts:
            self._qr_timer = self._later(expires_in, self._show_qr, attempt + 1, attempts)

    def _show_pair_code(self, digits):
        self._pairing_phone = digits
        self._state = PAIRING_CODE
        expires_in = max(0.0, self._pairing_deadline - self._now())
        self.emit(EventKind.PAIR_CODE, code=new_pair_code(), phone=f"+{digits}", expires_in=expires_in)

    def _pairing_expired(self, attempts):
        self._new_run()
        self._state = QR_EXPIRED
        self.emit(EventKind.QR_EXPIRED, attempts=attempts, message="QR expired, restart")

    # --- WhatsApp's offline queue (simulator_server) ---

    def _owe(self, item):
        """Keep `item` on WhatsApp's side and deliver it when due (if connected then; else on the next connect)."""
        name = simulator_server.put(self.store_dir, self.session_key, item)
        self._owed[name] = item
        if self._state == CONNECTED:
            self._schedule(name, item)

    def _schedule(self, name, item):
        delay = item.get("due", 0) - self._wall()
        if delay <= 0:
            self._deliver(name, item)
        else:
            self._later(delay, self._deliver, name, item)

    def _deliver(self, name, item):
        """Emit a kept item to the connected device, acknowledged by the host once committed. One that is no
        longer kept was acknowledged already (by this host or an earlier one)."""
        if self._state != CONNECTED or name not in self._owed:
            return
        store_dir, key, owed = self.store_dir, self.session_key, self._owed

        def ack():
            simulator_server.ack(store_dir, key, name)
            owed.pop(name, None)

        if item["kind"] == "message":
            self._emit(ProviderEvent(key, EventKind.MESSAGE, dict(item["data"]), ack=ack))
            return
        message_id, chat, status = item["id"], item["chat"], item["status"]
        read = read_name = None
        if status == "delivered" and self.timing.read_s is not None:
            # The contact reads it some time after it was delivered: kept before the delivered receipt goes (so no
            # kill in between can lose it), scheduled after it (so it never overtakes it). When this receipt is a
            # redelivery the read one is kept, and scheduled, already.
            read = {"kind": "receipt", "id": message_id, "chat": chat, "status": "read",
                    "due": self._wall() + max(0.0, self.timing.read_s - self.timing.delivered_s)}
            if simulator_server.item_name("receipt", message_id, "read") not in owed:
                read_name = simulator_server.put(store_dir, key, read)
                owed[read_name] = read
        self._emit(ProviderEvent(key, EventKind.RECEIPT, {"ids": [message_id], "chat": chat, "status": status,
                                                          "timestamp": int(time.time())}, ack=ack))
        if read_name is not None:
            self._schedule(read_name, read)

    @staticmethod
    def _chat_jid(to):
        to = str(to or "").strip()
        if "@" in to:
            user, _, server = to.partition("@")
            if user and server in ("s.whatsapp.net", "g.us", "lid", "newsletter"):
                return to
            raise ProviderError("invalid_recipient", f"not a WhatsApp address: {to!r}")
        try:
            return f"{phone_digits(to)}@s.whatsapp.net"
        except ProviderError:
            raise ProviderError("invalid_recipient", f"not a phone number or WhatsApp address: {to!r}") from None

    # --- the device store ---

    def _read_store(self):
        """The linked device saved on disk, None when there is none; _StoreCorrupt when unreadable."""
        try:
            with open(self.store_file, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _StoreCorrupt(exc.strerror or str(exc)) from exc
        try:
            data = json.loads(raw)
            linked = {"jid_user": str(data["jid_user"]), "jid_device": int(data["jid_device"]),
                      "phone": str(data["phone"]), "push_name": str(data["push_name"])}
        except (ValueError, TypeError, KeyError) as exc:
            raise _StoreCorrupt(type(exc).__name__) from exc
        return linked

    def _write_store(self, linked):
        os.makedirs(self.store_dir, exist_ok=True)
        data = {"version": STORE_VERSION, "session_key": self.session_key, "linked_at": int(time.time()), **linked}
        tmp = f"{self.store_file}.{secrets.token_hex(4)}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.store_file)

    # --- timers ---

    def _now(self):
        now = getattr(self._scheduler, "now", None)
        return now() if now else time.monotonic()

    def _wall(self):
        """Epoch seconds on the scheduler's clock: due times kept on WhatsApp's side are read by other processes."""
        wall = getattr(self._scheduler, "wall", None)
        return wall() if wall else time.time()

    def _later(self, delay, fn, *args):
        """Call fn(*args) under the lock after `delay`, unless the run it belongs to has ended by then."""
        run = self._run
        holder = []

        def fire():
            with self._lock:
                if holder:
                    self._timers.discard(holder[0])
                if run == self._run:
                    fn(*args)

        timer = self._scheduler.call_later(delay, fire)
        holder.append(timer)  # before fire() can take the lock: the caller holds it
        self._timers.add(timer)
        return timer

    def _cancel(self, timer):
        if timer is not None:
            timer.cancel()
            self._timers.discard(timer)

    def _new_run(self):
        """End the current run: its timers are cancelled and any that already started do nothing."""
        self._run += 1
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._qr_timer = None
        self._pairing_deadline = None
        self._linked = None
