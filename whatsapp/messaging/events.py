"""What the session host hands messaging (registered by WhatsappConfig.ready()): inbound messages and receipts,
the session's connection (what waited for it goes now), and the drain of a session's queue."""
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from whatsapp.host.handlers import Applied
from whatsapp.providers.base import EventKind
from whatsapp.sessions import events as session_events

from . import actions, drain


def apply_traffic(event, now=None):
    """An inbound message or a receipt. The session's state does not change, so its row is neither locked nor
    saved (session_events.touch) and the session pages hear of it only when its last activity moves. Receipt ids
    that found no message while one of the session's messages is `sending` are returned as early: the provider's
    id is recorded when that send commits, so the host tries them again."""
    schema_name, session_id = event.session_key.split(":", 1)
    now = now or timezone.now()
    early = ()
    with schema_context(schema_name), transaction.atomic():
        session, bumped = session_events.touch(int(session_id), now)
        if session is None:  # deleted while running
            return Applied(None, stop=True)
        if event.kind == EventKind.MESSAGE:
            actions.store_inbound(session, event.data)
        else:
            early = tuple(actions.apply_receipt(session, event.data).early_ids)
    if bumped:
        session_events.publish_state(schema_name, session)
        return Applied(session_events.session_payload(session), early_receipt_ids=early)
    return Applied(None, early_receipt_ids=early)


def settle_in_doubt(schema_name, session_id, accepted):
    """A host takes the session over: what an earlier host left `sending` is settled now (drain.settle_in_doubt)."""
    drain.settle_in_doubt(schema_name, session_id, accepted)


def on_connected(event):
    """What waited for the connection (put back by a send that found it down, swept) goes now."""
    schema_name, session_id = event.session_key.split(":", 1)
    with schema_context(schema_name):
        actions.due_now(int(session_id))
    drain.wake(schema_name, int(session_id), force=True)


class Sender:
    """The session host's drain of one session's queue (SessionHost.drain); looked up on each call."""

    @staticmethod
    def new_window():
        return drain.SendWindow()

    @staticmethod
    def drain(schema_name, session_id, provider, *, window, fence=None):
        return drain.drain(schema_name, session_id, provider, window=window, fence=fence)
