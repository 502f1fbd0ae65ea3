"""The interface every WhatsApp provider implements, and the events it emits.

A provider instance is one linked device (one session). The session host creates it, calls its methods, and
receives its events through `emit`. Providers never touch the database or the channel layer: `emit` only
enqueues (the host's publisher thread does the ORM and group_send work), because provider callbacks run on
threads that must not block (neonize's handlers stall whatsmeow when slow).
"""
import abc
import time
from dataclasses import dataclass, field
from typing import Callable


class EventKind:
    QR = "qr"  # data: code (str, what the QR encodes), expires_in (s), attempt (1-based), max_attempts
    QR_EXPIRED = "qr_expired"  # data: attempts — the QR attempt limit was reached; the session must be restarted
    PAIR_CODE = "pair_code"  # data: code ("ABCD-EFGH"), phone
    PAIRED = "paired"  # data: jid_user, jid_device, phone, push_name — a new device was linked; save jid_* to resume
    CONNECTED = "connected"  # data: phone, push_name, jid_user, jid_device
    DISCONNECTED = "disconnected"  # data: reason, will_retry (bool), retry_in (s or None), attempt
    LOGGED_OUT = "logged_out"  # data: reason — unlinked from the phone (or by logout()); needs a new scan
    MESSAGE = "message"  # data: id, chat, sender, sender_phone (or None), from_me, timestamp, type, text, ...
    RECEIPT = "receipt"  # data: ids (list), chat, status ("delivered" | "read"), timestamp
    ERROR = "error"  # data: code, message, fatal (bool) — e.g. "unreachable", "store_corrupt", "banned"
    # A contact is typing (state "composing", media "text" or "audio") or stopped ("paused") in a chat: data: chat,
    # sender, state, media. Only while the number is marked available (set_available), as WhatsApp sends them.
    CHAT_PRESENCE = "chat_presence"

    ALL = (QR, QR_EXPIRED, PAIR_CODE, PAIRED, CONNECTED, DISCONNECTED, LOGGED_OUT, MESSAGE, RECEIPT, ERROR,
           CHAT_PRESENCE)


@dataclass(frozen=True)
class ProviderEvent:
    """`ack`, when set, acknowledges the event to WhatsApp's side: the host calls it once the event is committed
    (never before), and a provider that sets it redelivers what was not acknowledged when the session connects
    again, on any host. None: the provider acknowledged it itself (neonize: whatsmeow acks on receipt)."""

    session_key: str
    kind: str
    data: dict = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    ack: Callable[[], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ProviderSettings:
    """Connection behaviour, from settings.WHATSAPP_* (times in milliseconds, as the env vars give them)."""

    max_reconnect_attempts: int = 5
    reconnect_delay_ms: int = 5000
    keepalive_interval_ms: int = 30000
    connection_timeout_ms: int = 60000
    max_qr_attempts: int = 3

    @classmethod
    def from_django_settings(cls):
        from django.conf import settings

        return cls(
            max_reconnect_attempts=settings.WHATSAPP_MAX_RECONNECT_ATTEMPTS,
            reconnect_delay_ms=settings.WHATSAPP_RECONNECT_DELAY,
            keepalive_interval_ms=settings.WHATSAPP_KEEPALIVE_INTERVAL,
            connection_timeout_ms=settings.WHATSAPP_CONNECTION_TIMEOUT,
            max_qr_attempts=settings.WHATSAPP_MAX_QR_ATTEMPTS,
        )


@dataclass(frozen=True)
class DeviceIdentity:
    """What a linked session needs to resume without a new scan (saved by the host on PAIRED)."""

    jid_user: str
    jid_device: int = 0


@dataclass(frozen=True)
class OutgoingMessage:
    type: str  # text | image | document | audio | video | location | contact | reaction
    text: str = ""
    media: bytes | None = None
    mimetype: str = ""
    filename: str = ""
    caption: str = ""
    latitude: float | None = None
    longitude: float | None = None
    contact_vcard: str = ""
    reply_to: str = ""
    reaction: str = ""
    reaction_to: str = ""
    # Who wrote the quoted (or reacted-to) message, which WhatsApp needs in the quote's key: our own number
    # (quoted_from_me) or a JID ("" = the chat itself, in a 1:1 chat); quoted_text is shown in the quote.
    quoted_from_me: bool = False
    quoted_sender: str = ""
    quoted_text: str = ""


class ProviderError(Exception):
    """A provider call failed; `code` is machine-readable (e.g. "not_connected", "unreachable")."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


Emit = Callable[[ProviderEvent], None]
CHAT_PRESENCE_STATES = ("composing", "paused")


class SessionProvider(abc.ABC):
    """One WhatsApp linked device.

    - `start()` returns at once; connecting happens on the provider's own thread(s) and is reported by events
      (qr / pair_code / paired / connected / disconnected / error). A session with `identity` resumes that
      device; without it a new device is paired (QR, or a pairing code when `pairing_phone` is given).
    - `stop()` disconnects and releases resources; the device stays linked (a later start resumes it).
    - `logout()` unlinks the device on WhatsApp's side and forgets its keys; emits logged_out.
    - `send()` returns the provider's message id or raises ProviderError. A provider that lets the sender choose
      the id (`new_message_id()` returns one) takes it as `send(..., message_id=...)`: the id is then stored before
      the message goes, so a send cut short by a crash can still be recognised (`accepted`, or its receipts).
    Every method is safe to call from any thread; none may block for long (a silent peer must not hang the caller).
    """

    name = "base"

    def __init__(self, session_key: str, *, emit: Emit, settings: ProviderSettings, store_dir: str,
                 identity: DeviceIdentity | None = None):
        self.session_key = session_key
        self._emit = emit
        self.settings = settings
        self.store_dir = store_dir
        self.identity = identity
        self.available = False

    def emit(self, kind, **data):
        self._emit(ProviderEvent(self.session_key, kind, data))

    @abc.abstractmethod
    def start(self, *, pairing_phone: str | None = None) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def logout(self) -> None: ...

    @abc.abstractmethod
    def request_pairing_code(self, phone: str) -> None: ...

    @abc.abstractmethod
    def send(self, to: str, message: OutgoingMessage) -> str: ...

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    def new_message_id(self) -> str | None:
        """An id for the next send, chosen before sending, or None when the provider only tells it afterwards
        (neonize 0.5.2: `send_message` passes no id to whatsmeow, see docs/sending-pipeline.md)."""
        return None

    @classmethod
    def accepted(cls, store_dir: str, session_key: str, message_ids) -> set:
        """Of `message_ids` (chosen with new_message_id), those WhatsApp's side is known to have accepted for the
        session. WhatsApp offers no such lookup: only the simulator, which is that side, can answer."""
        return set()

    def send_chat_presence(self, to: str, state: str) -> None:
        """Tell the chat `to` that we are typing (state "composing") or stopped ("paused"): WhatsApp shows
        "typing…" on the contact's phone, and stops by itself after a while without news. Raises ProviderError
        ("not_connected", "invalid_presence", "unsupported", …)."""
        raise ProviderError("unsupported", f"{self.name} cannot show typing.")

    def set_available(self, available: bool) -> None:
        """Mark the number online ("available") or not. WhatsApp sends a device the contacts' chat presence
        (typing…) only while it is available, and shows the number online to everyone meanwhile: a session's
        explicit choice (WhatsAppSession.show_contact_typing). Kept across reconnects; safe before start()."""
        self.available = bool(available)

    def fetch_contacts(self) -> list[dict]:
        """The linked phone's address book: [{jid, phone (E.164 or None), name, push_name, lid (or None)}].
        Raises ProviderError ("not_connected", "unsupported", …)."""
        raise ProviderError("unsupported", f"{self.name} cannot read the phone's contacts.")

    def fetch_groups(self) -> list[dict]:
        """The groups the linked phone is in: [{jid, name, topic, participants: [{jid, phone, is_admin}]}]."""
        raise ProviderError("unsupported", f"{self.name} cannot read the phone's groups.")
