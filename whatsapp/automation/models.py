"""The receptionist of a workspace or of one number: business hours, automatic answers, keyword rules, the bot
webhook, and what it did (the automation log) — tenant schema. Changed only by whatsapp.automation.actions; read
on every inbound message by whatsapp.automation.engine."""
from django.db import models
from django.utils import timezone

from core.crypto import SecretTextField
from whatsapp.conversations.models import Contact, Conversation
from whatsapp.messaging.models import Message
from whatsapp.sessions.models import WhatsAppSession


class Receptionist(models.Model):
    """The workspace's automatic answers (session null), or one number's: a number with a receptionist of its own
    uses that one instead of the workspace's, whole."""

    session = models.OneToOneField(WhatsAppSession, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="receptionist")
    # "workspace", or "session:<id>": one row per scope (a NULL session would not collide in a unique index).
    scope = models.CharField(max_length=40, unique=True)
    enabled = models.BooleanField(default=False)
    time_zone = models.CharField(max_length=64, blank=True, help_text="Blank: the workspace's time zone")
    # [{"day": "mon", "start": "09:00", "end": "17:00"}, …]; none: open around the clock.
    schedule = models.JSONField(default=list, blank=True)
    holidays = models.JSONField(default=list, blank=True, help_text='["2026-12-25", …]: closed all day')
    away_message = models.TextField(blank=True)
    greeting = models.TextField(blank=True)
    fallback = models.TextField(blank=True)
    # A contact gets the away message, the greeting or the fallback at most once in this many minutes.
    cooldown_minutes = models.PositiveIntegerField(default=60)
    handoff_keywords = models.JSONField(default=list, blank=True)
    handoff_reply = models.TextField(blank=True)
    handoff_minutes = models.PositiveIntegerField(default=60)
    # Who is told when a contact asks for a person (besides the conversation.handoff_requested webhook event):
    # members (accounts.Membership ids, by email), other email addresses, Telegram chats (the platform's bot).
    escalation_member_ids = models.JSONField(default=list, blank=True)
    escalation_emails = models.JSONField(default=list, blank=True)
    escalation_telegram_chat_ids = models.JSONField(default=list, blank=True)
    bot_url = models.URLField(max_length=2000, blank=True)
    bot_secret = SecretTextField(blank=True, help_text="Encrypted like webhook secrets")
    bot_enabled = models.BooleanField(default=False)
    bot_last_error = models.CharField(max_length=500, blank=True)
    bot_last_error_at = models.DateTimeField(null=True, blank=True)
    bot_last_ok_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"Receptionist ({self.scope})"


class KeywordRule(models.Model):
    """Answers an inbound message whose text matches, case-insensitively; the lowest priority that matches wins."""

    class Match(models.TextChoices):
        CONTAINS = "contains", "Contains"
        EQUALS = "equals", "Equals"
        STARTS_WITH = "starts_with", "Starts with"
        REGEX = "regex", "Regular expression"

    class Action(models.TextChoices):
        REPLY = "reply", "Reply"
        HANDOFF = "handoff", "Route to a person"

    class ReplyType(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        DOCUMENT = "document", "Document"
        AUDIO = "audio", "Audio"
        VIDEO = "video", "Video"

    session = models.ForeignKey(WhatsAppSession, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="keyword_rules", help_text="Null: every number of the workspace")
    name = models.CharField(max_length=120)
    match = models.CharField(max_length=20, choices=Match.choices, default=Match.CONTAINS)
    pattern = models.CharField(max_length=500)
    priority = models.PositiveIntegerField(default=100)
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.REPLY)
    reply_type = models.CharField(max_length=20, choices=ReplyType.choices, default=ReplyType.TEXT)
    reply_text = models.TextField(blank=True, help_text="The text, or the media's caption")
    media_url = models.URLField(max_length=2000, blank=True)
    cooldown_minutes = models.PositiveIntegerField(default=60)
    in_groups = models.BooleanField(default=False, help_text="Also answer in groups")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self):
        return self.name


class AutomationLog(models.Model):
    """One thing automation did (or declined to do) about an inbound message; the reply it queued is `reply`,
    which marks that message as automatic and says which rule or bot sent it."""

    class Kind(models.TextChoices):
        AWAY = "away", "Away message"
        GREETING = "greeting", "Greeting"
        RULE = "rule", "Keyword rule"
        FALLBACK = "fallback", "Fallback reply"
        BOT = "bot", "Bot reply"
        HANDOFF = "handoff", "Handed to a person"
        BOT_FAILED = "bot_failed", "Bot failed"
        SKIPPED = "skipped", "Not answered"

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="automation_log")
    chat_jid = models.CharField(max_length=100)
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    inbound = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reply = models.OneToOneField(Message, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="automation")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    rule = models.ForeignKey(KeywordRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=120, blank=True, help_text="The rule's name, or the bot")
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["session", "chat_jid", "created_at"], name="whatsapp_autolog_chat_idx"),
                   models.Index(fields=["inbound"], name="whatsapp_autolog_inbound_idx")]

    def __str__(self):
        return f"{self.kind} → {self.chat_jid}"


LOG_KINDS = AutomationLog.Kind.values  # the API's kind enum (settings ENUM_NAME_OVERRIDES: AutomationKindEnum)


class Handoff(models.Model):
    """A person talks in this conversation (or on this whole number, conversation null): automation stays silent
    there until `until`, or until the switch goes off."""

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="handoffs")
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="handoffs")
    # "session:<id>" or "conversation:<id>": one switch per scope.
    scope = models.CharField(max_length=40, unique=True)
    until = models.DateTimeField()
    requested = models.BooleanField(default=False, help_text="The contact asked for a person")
    reason = models.CharField(max_length=40, blank=True)
    started_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_constraint=False)
    started_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Handoff of {self.conversation_id} until {self.until}"
