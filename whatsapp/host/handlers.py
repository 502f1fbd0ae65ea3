"""What the session host asks of the WhatsApp features.

The host runs provider clients for the leases it holds, moves their events in order and drains sessions'
queues when asked; what starting a session, an event or a drain means is the features' business. Each feature
registers its part here from WhatsappConfig.ready(), so the host imports no feature package (import-linter
checks it):

  starter    (schema_name, session_id, host_id) -> Start, or None when the session should not run
  settlers   (schema_name, session_id, accepted) — before a host starts a session's client: settle what an
             earlier host left in doubt (`accepted(ids)`: the ids WhatsApp's side is known to hold)
  appliers   per event kind, in registration order: (event) -> Applied or None
  sender     .new_window() and .drain(schema_name, session_id, provider, window=...)
  commands   per action: (schema_name, session_id, provider) — work on the host outside its lock
"""
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Start:
    """How to start a session's client: the linked device to resume (None: link a new one), and the phone to
    ask a pairing code for instead of showing QR codes."""

    identity: object = None
    pairing_phone: str | None = None
    available: bool = False  # mark the number online, so the contacts' typing is heard (show_contact_typing)


@dataclass(frozen=True)
class Applied:
    payload: dict | None = None  # the session's new state, when it changed (and was published)
    stop: bool = False  # the host should stop the provider
    early_receipt_ids: tuple = ()  # receipt ids that matched no message while a send was in flight


_starter = None
_settlers = []
_appliers = {}
_sender = None
_commands = {}


def set_starter(starter):
    global _starter
    _starter = starter


def on_start(settler):
    if settler not in _settlers:
        _settlers.append(settler)


def on_events(kinds, applier):
    for kind in kinds:
        appliers = _appliers.setdefault(kind, [])
        if applier not in appliers:
            appliers.append(applier)


def set_sender(sender):
    global _sender
    _sender = sender


def on_command(action, handler):
    _commands[action] = handler


def start(schema_name, session_id, host_id):
    return _starter(schema_name, session_id, host_id)


def settle(schema_name, session_id, accepted):
    for settler in _settlers:
        settler(schema_name, session_id, accepted)


def apply(event):
    """Every applier registered for the event's kind, in order; one that says stop ends the round (the session
    is gone or must not run). The first payload, stop, and every early receipt id are returned together."""
    payload, early = None, ()
    appliers = _appliers.get(event.kind)
    if not appliers:
        log.warning("no handler for %s events", event.kind)
    for applier in appliers or ():
        applied = applier(event)
        if applied is None:
            continue
        payload = payload if payload is not None else applied.payload
        early += tuple(applied.early_receipt_ids)
        if applied.stop:
            return Applied(payload, stop=True, early_receipt_ids=early)
    return Applied(payload, early_receipt_ids=early)


def sender():
    return _sender


def command(action):
    return _commands.get(action)
