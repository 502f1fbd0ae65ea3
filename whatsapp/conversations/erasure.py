"""Erasing a contact for the GDPR (the right to erasure): the contact, its conversations with their notes and
hand-offs, the messages of those chats and the ones it sent in groups, their media files, and the traces other
features keep of them. The features that keep such traces register an eraser here (whatsapp.apps and
analytics.apps, in ready()), as they register handlers with the session host: this package imports none of them.

An eraser is called inside the erasure's transaction with the `Erasure` below, before the contact and its
conversations go; it deletes what it keeps, adds what it removed to `erasure.counts` (numbers only: the audit row
must hold no personal data) and may put what it found in `erasure.found` for the erasers after it (messaging puts
the message ids there, for webhooks). Files are removed on commit.
"""
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q

from audit import actions as audit

from .models import Contact, Conversation

_erasers = []


def on_erase(eraser):
    """Register eraser(erasure); they run in the order registered."""
    if eraser not in _erasers:
        _erasers.append(eraser)
    return eraser


@dataclass
class Erasure:
    contact: Contact
    session_id: int
    jids: list  # the contact's chats: its JID and, when known, its hidden identity (…@lid)
    conversation_ids: list
    counts: dict = field(default_factory=dict)
    found: dict = field(default_factory=dict)

    def count(self, what, n):
        self.counts[what] = self.counts.get(what, 0) + n


def erase_contact(contact, *, acting_user=None, tenant=None):
    """Delete the contact and everything personal kept about it (see the module). Returns the counts of what went.
    The audit row names the contact's id and those counts, never its number, name or messages."""
    with transaction.atomic():
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        jids = [jid for jid in (contact.jid, contact.lid) if jid]
        conversations = Conversation.objects.filter(Q(contact=contact) | Q(session_id=contact.session_id,
                                                                           chat_jid__in=jids))
        erasure = Erasure(contact=contact, session_id=contact.session_id, jids=jids,
                          conversation_ids=list(conversations.values_list("pk", flat=True)))
        for eraser in _erasers:
            eraser(erasure)
        # The conversations take their notes and hand-offs with them (on_delete CASCADE): counted by model.
        _, deleted = Conversation.objects.filter(pk__in=erasure.conversation_ids).delete()
        for label, n in deleted.items():
            erasure.count("conversations" if label == Conversation._meta.label else label.split(".")[-1].lower(), n)
        erasure.count("contacts", 1)
        audit.record("whatsapp.contact_erased", actor=acting_user, target=contact, tenant=tenant,
                     after=dict(sorted(erasure.counts.items())))
        contact.delete()
    return erasure.counts
