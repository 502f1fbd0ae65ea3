"""The session host: runs the provider clients of every session this process holds a lease for.

Threads: one lease thread (claim + renew every heartbeat, start/stop providers to match), one publisher
thread (applies provider events to the database and the channel layer, in order; receipts that arrive together
are applied together), the Celery threads that drain sessions' queues (drain: one at a time per session), and
whatever each provider runs itself. Provider callbacks only put events on the queue.
"""
import logging
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connections

from core import heartbeats
from whatsapp.providers.base import EventKind, ProviderError, ProviderEvent, ProviderSettings

from . import handlers, leases

log = logging.getLogger(__name__)

# A client we believe connected that reports it is not, without saying why, for this long is restarted. The
# lease loop checks every heartbeat (15 s), so a silent death is acted on within ~90 s.
ZOMBIE_AFTER_SECONDS = 60
# A receipt that arrived before its send was recorded (handlers.Applied.early_receipt_ids) is tried again every
# EARLY_RECEIPT_RETRY_SECONDS, for up to EARLY_RECEIPT_KEEP_SECONDS.
EARLY_RECEIPT_RETRY_SECONDS = 0.2
EARLY_RECEIPT_KEEP_SECONDS = 30
# The publisher takes up to this many waiting events at once, so a burst of receipts costs a few statements.
EVENTS_PER_ROUND = 500


_current = None


def current_host():
    """The host of this process (set by the worker bootstep), or None outside the `whatsapp` worker."""
    return _current


def set_current_host(host):
    global _current
    _current = host


def provider_class_for(name):
    """Imported here, lazily: neonize must only ever load inside the process that hosts sessions."""
    if name == "simulator":
        # Only the provider in use is imported, in the process that hosts sessions (neonize loads a Go runtime).
        from whatsapp.providers.simulator import SimulatorProvider, SimulatorTiming

        # WHATSAPP_SIMULATOR_QR_SECONDS=N (demos, browser tests): every QR code lives N s instead of WhatsApp's
        # 60 s for the first and 20 s for the next, so a rotation can be watched without waiting a minute.
        qr_seconds = settings.WHATSAPP_SIMULATOR_QR_SECONDS
        if qr_seconds:
            timing = SimulatorTiming(first_qr_s=float(qr_seconds), qr_rotation_s=float(qr_seconds))
            return type("SimulatorProvider", (SimulatorProvider,), {"timing": timing})
        return SimulatorProvider
    if name == "neonize":
        # neonize must never be imported before a fork (NEONIZE.md): only here, in the session host.
        from whatsapp.providers.neonize import NeonizeProvider

        return NeonizeProvider
    raise ValueError(f"unknown WHATSAPP_PROVIDER {name!r} (use neonize or simulator)")


@dataclass
class _Sender:
    """One session's drain on this host: whether one runs, whether another was asked for meanwhile, and the
    measured send rate that sizes its claims (whatsapp.messaging.drain.SendWindow)."""
    mutex: threading.Lock = field(default_factory=threading.Lock)
    running: bool = False
    again: bool = False
    window: object = None


def new_host_id():
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SessionHost:
    def __init__(self, provider_class, *, store_dir, host_id=None, settings=None, claim_limit=500,
                 heartbeat_seconds=None):
        self.provider_class = provider_class
        self.store_dir = store_dir
        self.host_id = host_id or new_host_id()
        self.settings = settings or ProviderSettings.from_django_settings()
        self.claim_limit = claim_limit
        self.heartbeat_seconds = heartbeat_seconds or leases.HEARTBEAT_INTERVAL.total_seconds()
        self.providers = {}
        self.believed_connected = set()  # keys whose last status event was CONNECTED
        self._suspect_since = {}  # key -> monotonic time the client was first seen not connected
        self.events = queue.Queue()
        self.early_receipts = []  # [(ProviderEvent with the early ids only, give-up monotonic time)]
        self._senders = {}  # key -> _Sender
        self.fences = {}  # key -> leases.Fence of the lease this host claimed
        self._early_retry_at = 0.0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._threads = []

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self):
        os.makedirs(self.store_dir, exist_ok=True)
        for target, name in ((self._lease_loop, "leases"), (self._publish_loop, "publisher")):
            thread = threading.Thread(target=target, name=f"session-host-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("session host %s started (%s)", self.host_id, self.provider_class.name)

    def stop(self, *, release=True):
        """Stop every provider; with `release`, free the leases at once so another host takes over now (the worker
        then wakes the other hosts). Returns how many leases were released."""
        self._stopping.set()
        with self._lock:
            keys = list(self.providers)
            for key in keys:
                self._stop_provider(key)
        for thread in self._threads:
            thread.join(timeout=10)
        if release:
            return leases.release(self.host_id, keys)
        return 0

    # --- leases ------------------------------------------------------------------------------------------

    def _lease_loop(self):
        while not self._stopping.is_set():
            try:
                self.sync()
            except Exception:
                log.exception("session host %s: lease round failed", self.host_id)
                close_old_connections()
            self._beat()
            self._stopping.wait(self.heartbeat_seconds)
        try:
            heartbeats.forget("host", self.host_id)
        except Exception:
            log.warning("session host %s: could not remove its heartbeat", self.host_id, exc_info=True)
        connections.close_all()

    def _beat(self):
        """The `host` heartbeat (core.heartbeats): alive, how many sessions it runs, its memory."""
        try:
            heartbeats.beat("host", self.host_id, ttl=max(heartbeats.TTL_SECONDS, 3 * self.heartbeat_seconds),
                            sessions=len(self.providers), provider=self.provider_class.name,
                            **heartbeats.process_info())
        except Exception:  # Redis away: health says so; the sessions keep running
            log.warning("session host %s: heartbeat failed", self.host_id, exc_info=True)

    def sync(self, now=None):
        """Renew, claim, and make the running providers match the leases held. Returns the keys held."""
        if self._stopping.is_set():  # shutting down: the leases are being released, not claimed
            return set()
        claimed = leases.claim_fenced(self.host_id, limit=self.claim_limit, now=now)
        held = set(leases.renew(self.host_id, now=now)) | set(claimed)
        with self._lock:
            self.fences.update(claimed)
            for key in [key for key in self.fences if key not in held]:
                self.fences.pop(key, None)
            for key in [key for key in self.providers if key not in held]:
                log.info("session %s: lease lost, stopping here", key)
                self._stop_provider(key)
            for key in sorted(held - set(self.providers)):
                if self._stopping.is_set():
                    break
                self._start_provider(key)
        self.watchdog()
        return held

    def watchdog(self, now=None):
        """Restart clients that died silently: believed connected, not connected, and no event said why."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for key, provider in list(self.providers.items()):
                if key not in self.believed_connected or provider.is_connected:
                    self._suspect_since.pop(key, None)
                    continue
                since = self._suspect_since.setdefault(key, now)
                if now - since < ZOMBIE_AFTER_SECONDS:
                    continue
                log.warning("session %s: no answer for %d s, restarting the client", key, now - since)
                self._suspect_since.pop(key, None)
                self.believed_connected.discard(key)
                # Applied here, not queued, so the activity log reads in order: silence, then the restart.
                self.handle(ProviderEvent(key, EventKind.DISCONNECTED, {
                    "reason": f"No answer from WhatsApp for {int(now - since)} s: the connection was restarted",
                    "will_retry": True, "retry_in": None}))
                self._stop_provider(key)
                self._start_provider(key)

    # --- providers ---------------------------------------------------------------------------------------

    def _start_provider(self, key):
        schema_name, session_id = key.split(":", 1)
        start = handlers.start(schema_name, int(session_id), self.host_id)
        if start is None:  # deleted, or no longer wanted
            leases.want_stopped(schema_name, int(session_id))
            return
        sender = self._senders.get(key)
        try:  # unless a drain runs here (a restart), what is `sending` was left by an earlier host or a crash
            if sender is None or not sender.running:
                handlers.settle(schema_name, int(session_id),
                                lambda ids: self.provider_class.accepted(self.store_dir, key, ids))
        except Exception:  # the sweeper settles them later; the session must start regardless
            log.exception("session %s: settling its in-doubt messages failed", key)
            close_old_connections()
        provider = self.provider_class(key, emit=self.events.put, settings=self.settings,
                                       store_dir=self.store_dir, identity=start.identity)
        self.providers[key] = provider
        try:
            provider.set_available(start.available)
            provider.start(pairing_phone=None if start.identity else start.pairing_phone)
        except Exception as exc:  # one broken client must never take the host (or its neighbours) down
            log.exception("session %s failed to start", key)
            self.providers.pop(key, None)
            self.events.put(provider_error(key, exc))

    def _stop_provider(self, key):
        self.believed_connected.discard(key)
        self._suspect_since.pop(key, None)
        provider = self.providers.pop(key, None)
        if provider is not None:
            try:
                provider.stop()
            except Exception:
                log.exception("session %s did not stop cleanly", key)

    def provider(self, key):
        with self._lock:
            return self.providers.get(key)

    # --- commands (from tasks routed to this host) --------------------------------------------------------

    def command(self, key, action, **kwargs):
        """send(message_id) | restart | logout | pairing_code(phone) | simulate_*(…). Errors become session
        events (or, for send, the message's failure), never raise."""
        if action == "drain":
            self.drain(key)
            return
        if action == "chat_presence":
            self.chat_presence(key, kwargs.get("to"), kwargs.get("state"))
            return
        if action == "set_available":
            provider = self.provider(key)
            try:
                if provider is not None:
                    provider.set_available(bool(kwargs.get("available")))
            except ProviderError as exc:  # not connected: it is sent when the session connects
                log.info("session %s: availability not sent now (%s)", key, exc.code)
            return
        work = handlers.command(action)
        if work is not None:  # outside the host lock: reading a phone's address book may take a while
            schema_name, session_id = key.split(":", 1)
            try:
                work(schema_name, int(session_id), self.provider(key))
            except Exception:
                log.exception("session %s: %s failed", key, action)
                close_old_connections()
            return
        with self._lock:
            provider = self.providers.get(key)
            try:
                if action == "restart":
                    self._stop_provider(key)
                    self._start_provider(key)
                    return
                if provider is None:
                    raise ProviderError("session_not_running", "This session is not running on this host.")
                if action == "logout":
                    provider.logout()
                elif action == "pairing_code":
                    provider.request_pairing_code(kwargs["phone"])
                elif action.startswith("simulate_") and hasattr(provider, action):
                    getattr(provider, action)(**kwargs)
                else:
                    raise ProviderError("unsupported", f"{action} is not available with {provider.name}.")
            except ProviderError as exc:
                self.events.put(ProviderEvent(key, EventKind.ERROR, {"code": exc.code, "message": str(exc),
                                                                     "fatal": False}))

    def chat_presence(self, key, to, state):
        """"typing…" on the contact's phone (or no longer). Best effort and short-lived: a failure is logged, never
        a session event (a member typing while the number reconnects must not fill its activity with errors)."""
        provider = self.provider(key)
        if provider is None:
            return
        try:
            provider.send_chat_presence(to, state)
        except ProviderError as exc:
            log.info("session %s: chat presence %s to %s not sent (%s)", key, state, to, exc.code)

    def drain(self, key):
        """Send the session's due messages (the registered sender) on the calling thread. One drain per session
        at a time, so its messages go in order: asked for while one runs, that one goes round once more instead
        (a drain that found the queue empty may have looked just before the new rows committed)."""
        sending = handlers.sender()
        with self._lock:
            sender = self._senders.setdefault(key, _Sender(window=sending.new_window()))
        with sender.mutex:
            if sender.running:
                sender.again = True
                return
            sender.running, sender.again = True, False
        schema_name, session_id = key.split(":", 1)
        while True:
            try:
                sending.drain(schema_name, int(session_id), self.provider(key), window=sender.window,
                              fence=self.fences.get(key))
            except Exception:  # what was claimed stays `sending` (reported by the sweeper); the rest stays queued
                log.exception("session %s: draining its queue failed", key)
                close_old_connections()
            with sender.mutex:
                if not sender.again:
                    sender.running = False
                    return
                sender.again = False

    # --- events ------------------------------------------------------------------------------------------

    def _publish_loop(self):
        while not self._stopping.is_set() or not self.events.empty():
            try:
                batch = [self.events.get(timeout=EARLY_RECEIPT_RETRY_SECONDS)]
            except queue.Empty:
                batch = []
            while batch and len(batch) < EVENTS_PER_ROUND:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self.handle_many(batch)
            if self.early_receipts and time.monotonic() >= self._early_retry_at:
                self._early_retry_at = time.monotonic() + EARLY_RECEIPT_RETRY_SECONDS
                self.retry_early_receipts()
        connections.close_all()

    def handle_many(self, batch):
        """Apply events in order; a run of receipts between other events is applied as one receipt per session
        and status (in the order each first appeared: a message's delivered before its read). Each event is
        acknowledged to the provider once applied (committed), not before."""
        receipts = {}
        for event in batch:
            if event.kind == EventKind.RECEIPT and event.data.get("status") in ("delivered", "read"):
                group = receipts.setdefault((event.session_key, event.data["status"]), [event, [], []])
                ids = list(event.data.get("ids") or [])
                group[1].extend(ids)
                if event.ack is not None:
                    group[2].append((event.ack, ids))
                continue
            self._handle_receipts(receipts)
            receipts = {}
            self.handle(event)
        self._handle_receipts(receipts)

    def _handle_receipts(self, receipts):
        for first, ids, acks in receipts.values():
            merged = ProviderEvent(first.session_key, first.kind, {**first.data, "ids": ids}, at=first.at)
            applied = self.handle(merged, acks=acks)
            if applied is not None:
                self._ack_resolved(acks, applied.early_receipt_ids)

    @staticmethod
    def _ack_resolved(acks, still_early):
        """Acknowledge the events whose ids are all applied; those with an early id wait with it."""
        still_early = set(still_early)
        for ack, ids in acks:
            if not still_early.intersection(ids):
                _acknowledge(ack)

    def handle(self, event, acks=None):
        """Apply one event; acknowledge it to the provider once committed (a receipt merged by handle_many brings
        its originals' `acks`, acknowledged by the caller; early ids keep theirs until they resolve). Returns
        what was applied, or None when nothing was (the provider redelivers an unacknowledged event later)."""
        if event.kind not in (EventKind.MESSAGE, EventKind.RECEIPT) and not self._fence_holds(event.session_key):
            # A status event from a client this host no longer owns (paused past its lease, or the session was
            # deleted): the holder reports the session's state, this copy stops. Messages and receipts are
            # WhatsApp's facts, applied idempotently whoever hears them.
            log.warning("session %s: %s ignored and the client stopped: this host no longer holds its lease",
                        event.session_key, event.kind)
            with self._lock:
                self.fences.pop(event.session_key, None)
                self._stop_provider(event.session_key)
            return None
        if event.kind == EventKind.CONNECTED:
            self.believed_connected.add(event.session_key)
        elif event.kind in (EventKind.DISCONNECTED, EventKind.LOGGED_OUT, EventKind.QR, EventKind.ERROR):
            self.believed_connected.discard(event.session_key)
        try:
            applied = handlers.apply(event)
        except Exception:
            log.exception("event %s for %s could not be applied", event.kind, event.session_key)
            close_old_connections()
            return None
        if acks is None and event.ack is not None:
            acks = [(event.ack, list(event.data.get("ids") or []))]
            if not applied.early_receipt_ids:
                _acknowledge(event.ack)
        if applied.early_receipt_ids:
            self._keep_early_receipt(event, applied.early_receipt_ids, acks=acks)
        if applied.stop:
            with self._lock:
                self._stop_provider(event.session_key)
        return applied

    def _fence_holds(self, key):
        fence = self.fences.get(key)
        if fence is None:  # a client started outside the lease loop (tests drive hosts by hand): nothing to check
            return True
        try:
            return fence.held()
        except Exception:
            log.exception("session %s: the lease could not be checked", key)
            close_old_connections()
            return True  # the database is the problem; applying it cannot make two hosts write

    def _keep_early_receipt(self, event, ids, give_up_at=None, acks=None):
        """Keep the early `ids` to try again, with the acknowledgements of the events that named them."""
        retry = ProviderEvent(event.session_key, event.kind, {**event.data, "ids": list(ids)}, at=event.at)
        waiting = [(ack, acked_ids) for ack, acked_ids in acks or () if set(ids).intersection(acked_ids)]
        self.early_receipts.append((retry, give_up_at or time.monotonic() + EARLY_RECEIPT_KEEP_SECONDS, waiting))

    def retry_early_receipts(self):
        """Apply the kept early receipts again (together, per session and status); those still early are kept
        until they give up (then the message stays `sent`, as when WhatsApp sends no receipt)."""
        pending, self.early_receipts = self.early_receipts, []
        now = time.monotonic()
        groups = {}
        for event, give_up_at, acks in pending:
            group = groups.setdefault((event.session_key, event.data.get("status")), [event, {}, []])
            for receipt_id in event.data.get("ids") or ():
                group[1][receipt_id] = min(give_up_at, group[1].get(receipt_id, give_up_at))
            group[2].extend(acks)
        for (key, _), (first, give_up, acks) in groups.items():
            event = ProviderEvent(key, first.kind, {**first.data, "ids": list(give_up)}, at=first.at)
            try:
                applied = handlers.apply(event)
            except Exception:
                log.exception("early receipt for %s could not be applied", key)
                close_old_connections()
                continue  # not acknowledged: the provider delivers them again on the next connection
            by_deadline = {}
            for receipt_id in applied.early_receipt_ids:
                if now < give_up[receipt_id]:
                    by_deadline.setdefault(give_up[receipt_id], []).append(receipt_id)
                else:  # given up: acknowledged like an applied one (WhatsApp would never stop resending it)
                    log.warning("receipt %s for %s matched no message after %s s", receipt_id, key,
                                EARLY_RECEIPT_KEEP_SECONDS)
            waiting = [i for ids in by_deadline.values() for i in ids]
            self._ack_resolved(acks, waiting)
            for give_up_at, ids in by_deadline.items():
                self._keep_early_receipt(event, ids, give_up_at, acks=acks)


def _acknowledge(ack):
    """Tell the provider an event is committed. A failed acknowledgement only means a redelivery, applied
    idempotently, so it is logged and the host goes on."""
    try:
        ack()
    except Exception:
        log.exception("an event could not be acknowledged to the provider")


def provider_error(key, exc):
    return ProviderEvent(key, EventKind.ERROR, {"code": "start_failed", "message": str(exc), "fatal": True})
