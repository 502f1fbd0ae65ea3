"""Contacts, groups and conversations of a tenant's sessions (tenant schema)."""
from django.db import models
from django.utils import timezone

from core.crypto import EncryptedTextField
from whatsapp.sessions.models import WhatsAppSession


class Contact(models.Model):
    """Someone a session talks to: created from inbound and outgoing messages and by a sync of the phone's
    address book (whatsapp.conversations.actions). `lid` is WhatsApp's hidden identity (…@lid) when one is known."""

    class Source(models.TextChoices):
        INBOUND = "inbound", "Sent us a message"
        OUTBOUND = "outbound", "We sent a message"
        SYNC = "sync", "Synced from the phone"

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="contacts")
    jid = models.CharField(max_length=100, help_text="e.g. 14155550123@s.whatsapp.net, or …@lid when unresolved")
    phone = models.CharField(max_length=20, blank=True, help_text="E.164; empty while WhatsApp hides it")
    lid = models.CharField(max_length=100, blank=True, db_index=True)
    name = models.CharField(max_length=255, blank=True, help_text="From the phone's address book")
    push_name = models.CharField(max_length=255, blank=True, help_text="The name they set in WhatsApp")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.INBOUND)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "push_name", "phone", "id"]
        constraints = [models.UniqueConstraint(fields=["session", "jid"], name="whatsapp_contact_session_jid")]

    def __str__(self):
        return self.name or self.push_name or self.phone or self.jid


class Group(models.Model):
    """A WhatsApp group the session's phone is in (synced from the phone, or seen in an inbound message)."""

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="groups")
    jid = models.CharField(max_length=100, help_text="…@g.us")
    name = models.CharField(max_length=255, blank=True)
    topic = models.TextField(blank=True)
    participants = models.JSONField(default=list, help_text='[{"jid", "phone", "is_admin"}]')
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["session", "jid"], name="whatsapp_group_session_jid")]

    def __str__(self):
        return self.name or self.jid


class Conversation(models.Model):
    """One chat of one session (a contact or a group): what the conversation pages list, and a ticket of the shared
    inbox: open, pending or closed, and assigned to a member (whatsapp.inbox.actions changes both)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        CLOSED = "closed", "Closed"

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="conversations")
    chat_jid = models.CharField(max_length=100)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="conversations")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # PREVIEW_LENGTH characters of the last message, encrypted like its body (core.crypto).
    last_message_preview = EncryptedTextField(blank=True)
    unread_count = models.PositiveIntegerField(default=0)
    # A new inbound message opens a pending or closed conversation again (whatsapp.conversations.actions._note).
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    # The accounts.Membership (public schema) answering it, by id: a foreign key from a tenant table into public
    # would make removing a member (done in the public schema) reach for this table where it does not exist. A
    # removed member's conversations count as unassigned (whatsapp.inbox.selectors).
    assignee_id = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["session", "chat_jid"], name="whatsapp_conversation_chat")]

    def __str__(self):
        return str(self.contact or self.group or self.chat_jid)
