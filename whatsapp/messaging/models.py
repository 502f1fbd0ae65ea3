"""Messages, and the tenant's sending policy: blocked numbers and pacing (tenant schema)."""
from django.db import models
from django.utils import timezone

from core.crypto import EncryptedTextField

from whatsapp.sessions.models import WhatsAppSession


class Message(models.Model):
    """One WhatsApp message, sent through the API (out) or received by a session (in). Changed only by
    whatsapp.messaging.actions. Outgoing rows are committed `queued` before anything is sent (the sending pipeline of
    ARCHITECTURE.md); receipts move them sent → delivered → read, never backwards."""

    class Direction(models.TextChoices):
        OUT = "out", "Outgoing"
        IN = "in", "Incoming"

    class Type(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        DOCUMENT = "document", "Document"
        AUDIO = "audio", "Audio"
        VIDEO = "video", "Video"
        LOCATION = "location", "Location"
        CONTACT = "contact", "Contact card"
        REACTION = "reaction", "Reaction"
        STICKER = "sticker", "Sticker"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"
        RECEIVED = "received", "Received"

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    # The other party: the recipient (out) or the sender (in), E.164; empty for groups and unresolved senders.
    to_phone = models.CharField(max_length=20, blank=True)
    from_phone = models.CharField(max_length=20, blank=True)
    chat_jid = models.CharField(max_length=100, help_text="The WhatsApp chat, e.g. 14155550123@s.whatsapp.net")
    sender_jid = models.CharField(max_length=100, blank=True, help_text="Inbound: who sent it (group member, @lid…)")
    sender_unresolved = models.BooleanField(
        default=False, help_text="Inbound: WhatsApp gave no phone number for the sender (an @lid identity).")
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.TEXT)
    # Encrypted at rest when WHATSAPP_ENCRYPT_MESSAGES is on (core.crypto).
    text = EncryptedTextField(blank=True)
    caption = EncryptedTextField(blank=True)
    # Media (image/document/audio/video/sticker): the URL it was fetched from (out) and the stored copy, a path
    # relative to MEDIA_ROOT under the tenant's own directory (whatsapp.messaging.media).
    media_url = models.URLField(max_length=2000, blank=True)
    media_file = models.CharField(max_length=500, blank=True)
    media_mimetype = models.CharField(max_length=120, blank=True)
    media_size = models.PositiveIntegerField(null=True, blank=True)
    media_filename = models.CharField(max_length=255, blank=True)
    media_error = models.CharField(max_length=500, blank=True, help_text="Inbound: why the media could not be kept")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    location_name = models.CharField(max_length=255, blank=True)
    contact_card = models.JSONField(null=True, blank=True, help_text='{"name", "phone", "vcard"}')
    # The WhatsApp id of the message this one quotes (reply) or reacts to (reaction).
    reply_to = models.CharField(max_length=128, blank=True)
    reaction = models.CharField(max_length=32, blank=True)
    conversation = models.ForeignKey("Conversation", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="messages")
    contact = models.ForeignKey("Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.CharField(max_length=500, blank=True)
    provider_message_id = models.CharField(max_length=128, blank=True, db_index=True)
    # Unique within the tenant's schema (NULLs do not collide): the API's Idempotency-Key header.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    request_hash = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Queued and waiting for its pacing slot (whatsapp.messaging.pacing) until then; why: the interval or the daily cap.
    paced_until = models.DateTimeField(null=True, blank=True)
    paced_reason = models.CharField(max_length=20, blank=True, choices=[
        ("interval", "Pacing between messages of this number"), ("daily_cap", "The number's daily cap is reached")])
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="whatsapp_msg_due_idx")]
        # An inbound message is stored once per WhatsApp id, even when two hosts apply its redelivery at once
        # (WhatsApp redelivers what was not acknowledged: at-least-once in, exactly-once stored).
        constraints = [models.UniqueConstraint(
            fields=["session", "provider_message_id"], name="whatsapp_msg_inbound_once",
            condition=models.Q(direction="in") & ~models.Q(provider_message_id=""))]

    def __str__(self):
        return f"{self.direction} {self.type} {self.pk} ({self.status})"


class BlockedNumber(models.Model):
    """A number this tenant never sends to (on top of the installation's WHATSAPP_BLOCKED_NUMBERS)."""

    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    reason = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_constraint=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["phone"]

    def __str__(self):
        return self.phone


class PacingPolicy(models.Model):
    """This tenant's sending pace per number (whatsapp.messaging.pacing). One row per tenant schema; an empty field means
    the installation's default (WHATSAPP_PACING_* settings)."""

    enabled = models.BooleanField(default=True)
    min_interval_ms = models.PositiveIntegerField(null=True, blank=True)
    jitter_ms = models.PositiveIntegerField(null=True, blank=True)
    daily_cap = models.PositiveIntegerField(null=True, blank=True)
    warmup_days = models.PositiveIntegerField(null=True, blank=True)
    warmup_daily_cap = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return "Pacing policy"
