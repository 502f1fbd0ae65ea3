"""The shared inbox's own rows (tenant schema): where round robin stands, canned replies and internal notes. A
conversation's status and assignee live on the conversation (whatsapp.conversations.models.Conversation). Changed
only by whatsapp.inbox.actions."""
from django.db import models
from django.utils import timezone

from whatsapp.conversations.models import Conversation


class RoundRobin(models.Model):
    """One row per workspace: the member who got the last conversation by round robin (an accounts.Membership id;
    no foreign key into the public schema, as on Conversation.assignee_id). Locked while the next one is picked,
    so two assignments at once never pick the same member twice in a row."""

    last_member_id = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)


class CannedReply(models.Model):
    """A saved answer members pick by its short code while replying ("/price" → the text). The code is kept in
    lower case, so "/Price" and "/price" are the same reply."""

    code = models.CharField(max_length=32, unique=True, help_text="Letters, digits, - and _; typed after a /")
    text = models.TextField()
    # No database constraint into the public schema (as Message.created_by): a flush of public must not need it.
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   db_constraint=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"/{self.code}"


class ConversationNote(models.Model):
    """A note members leave on a conversation for each other: shown on the conversation's page and API, never
    sent to WhatsApp (it is no message and never enters the sending pipeline)."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               db_constraint=False)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]


class AutoAssign(models.Model):
    """Who gets a new conversation (a contact's first message makes it) of the workspace (session null) or of one
    number: nobody, the next agent by round robin (online agents first), or one fixed member. A number with a row
    of its own uses it instead of the workspace's."""

    class Mode(models.TextChoices):
        OFF = "off", "Nobody (assign by hand)"
        ROUND_ROBIN = "round_robin", "Round robin among online agents"
        MEMBER = "member", "A fixed member"

    session = models.OneToOneField("whatsapp.WhatsAppSession", null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="auto_assign")
    # "workspace", or "session:<id>": one row per scope (a NULL session would not collide in a unique index).
    scope = models.CharField(max_length=40, unique=True)
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.OFF)
    member_id = models.PositiveIntegerField(null=True, blank=True, help_text="accounts.Membership id (mode member)")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Auto-assign ({self.scope}): {self.mode}"
