"""Broadcasts (tenant schema): the audience's contacts and the opt-out list, message templates, campaigns and one
row per recipient of a campaign. Changed only by whatsapp.campaigns.actions (and, for the recipients' sending, by
whatsapp.campaigns.feeder); a campaign's messages are ordinary whatsapp.messaging Message rows."""
from django.db import models
from django.utils import timezone

from whatsapp.messaging.models import Message
from core.crypto import EncryptedTextField
from whatsapp.sessions.models import WhatsAppSession


class AudienceContact(models.Model):
    """Someone a campaign may go to: a number with a name, tags and custom fields (imported from a CSV, added by
    hand or over the API). Distinct from whatsapp.conversations' Contact, which is what one session saw."""

    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    name = models.CharField(max_length=255, blank=True)
    tags = models.JSONField(default=list, blank=True, help_text='["vip", "jakarta"]')
    fields = models.JSONField(default=dict, blank=True, help_text='{"order_id": "A-17"}: {{field.order_id}}')
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "phone", "id"]

    def __str__(self):
        return self.name or self.phone


class OptOut(models.Model):
    """A number that asked not to get broadcasts: every later campaign skips it (and a running one does not send to
    it any more)."""

    class Source(models.TextChoices):
        INBOUND = "inbound", "Replied with an opt-out word"
        API = "api", "Added over the API"
        PAGE = "page", "Added on the contacts page"

    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    source = models.CharField(max_length=20, choices=Source.choices)
    keyword = models.CharField(max_length=40, blank=True, help_text="The word they sent, for inbound opt-outs")
    session = models.ForeignKey(WhatsAppSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # When the one confirmation was queued (inbound opt-outs only): a second STOP is not answered again.
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.phone


class BroadcastSettings(models.Model):
    """The workspace's opt-out words and confirmation (one row per schema; none = the defaults)."""

    opt_out_words = models.JSONField(default=list, blank=True)
    confirmation_text = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)


class MessageTemplate(models.Model):
    """A named message with variables ({{name}}, {{phone}}, {{field.order_id}}, {{name|friend}} with a default): a
    text, or media (image, video, document) with the text as caption; optional variations, one picked per
    recipient."""

    class MediaType(models.TextChoices):
        NONE = "", "Text only"
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        DOCUMENT = "document", "Document"

    name = models.CharField(max_length=100, unique=True)
    body = models.TextField(help_text="The text, or the media's caption")
    variations = models.JSONField(default=list, blank=True, help_text="Other phrasings of body")
    defaults = models.JSONField(default=dict, blank=True, help_text='{"name": "friend"}: used when a value is empty')
    media_type = models.CharField(max_length=10, choices=MediaType.choices, default=MediaType.NONE, blank=True)
    media_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        FINISHED = "finished", "Finished"

    name = models.CharField(max_length=120)
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, related_name="campaigns")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    # Who it goes to: {"tags": [...], "phones": [...], "all": bool}; the recipients are planned from it at start.
    audience = models.JSONField(default=dict)
    sessions = models.ManyToManyField(WhatsAppSession, related_name="+")
    start_at = models.DateTimeField(null=True, blank=True, help_text="Scheduled start; empty = when started")
    quiet_start = models.TimeField(null=True, blank=True, help_text="No sending from (workspace time zone)")
    quiet_end = models.TimeField(null=True, blank=True, help_text="… until")
    min_gap_seconds = models.PositiveIntegerField(default=30)
    max_gap_seconds = models.PositiveIntegerField(default=60)
    daily_cap = models.PositiveIntegerField(default=200, help_text="Messages per number per day for this campaign")
    cold_daily_cap = models.PositiveIntegerField(
        default=50, help_text="Of those, to contacts who never wrote to the workspace first")
    progress_every = models.PositiveIntegerField(default=100, help_text="A campaign.progress webhook every N sent")
    progress_notified = models.PositiveIntegerField(default=0)
    pause_reason = models.CharField(max_length=300, blank=True)
    planned_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_constraint=False)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="whatsapp_campaign_status_idx")]

    def __str__(self):
        return self.name


class CampaignSender(models.Model):
    """One number of a campaign and its pace: when it may queue its next recipient, and how many it queued on the
    current day (of the workspace's time zone), cold contacts apart."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="senders")
    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="+")
    next_send_at = models.DateTimeField(null=True, blank=True)
    day = models.DateField(null=True, blank=True)
    sent_on_day = models.PositiveIntegerField(default=0)
    cold_on_day = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "session"], name="whatsapp_campaign_sender")]


class CampaignRecipient(models.Model):
    """One recipient of a campaign: its rendered message, then the Message that carries it (whose status is the
    recipient's once queued). The Message's Idempotency-Key is campaign-<campaign>-<recipient>, so a feeder that
    dies between queueing and recording finds the same message again rather than sending a second."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting its turn"
        QUEUED = "queued", "Handed to the sending queue"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Refused by the sending queue"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    phone = models.CharField(max_length=20)
    name = models.CharField(max_length=255, blank=True)
    text = EncryptedTextField(help_text="The rendered message, encrypted like message bodies")
    variation = models.PositiveSmallIntegerField(default=0)
    cold = models.BooleanField(default=True, help_text="They never wrote to the workspace first")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=500, blank=True)
    session = models.ForeignKey(WhatsAppSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    queued_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "phone"], name="whatsapp_campaign_recipient")]
        indexes = [models.Index(fields=["campaign", "status", "id"], name="whatsapp_recipient_turn_idx"),
                   models.Index(fields=["phone"], name="whatsapp_recipient_phone_idx")]
