"""A tenant's WhatsApp sessions (tenant schema). Changed only by whatsapp.actions and the session host."""
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class WhatsAppSession(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "Not linked"
        STARTING = "starting", "Starting"
        QR = "qr", "Waiting for scan"
        PAIRING = "pairing", "Waiting for pairing code"
        CONNECTED = "connected", "Connected"
        RECONNECTING = "reconnecting", "Reconnecting"
        DISCONNECTED = "disconnected", "Disconnected"
        LOGGED_OUT = "logged_out", "Logged out"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"

    name = models.CharField(max_length=64, unique=True, help_text="^[a-zA-Z0-9_-]{1,64}$, used in the API")
    label = models.CharField(max_length=120, blank=True, help_text='Shown on the dashboard, e.g. "Front desk"')
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    status_detail = models.CharField(max_length=500, blank=True, help_text="Human explanation of the status")
    # Whether the tenant wants it running; hosts restore every session that should run.
    should_run = models.BooleanField(default=False)
    phone = models.CharField(max_length=20, blank=True)
    push_name = models.CharField(max_length=120, blank=True)
    jid_user = models.CharField(max_length=64, blank=True)
    jid_device = models.PositiveIntegerField(default=0)
    qr_code = models.TextField(blank=True)
    qr_expires_at = models.DateTimeField(null=True, blank=True)
    pair_code = models.CharField(max_length=9, blank=True)
    # Set when the tenant links by phone number instead of QR: the host asks for a pairing code for it.
    pairing_phone = models.CharField(max_length=20, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    # When this number was first linked: the pacing warm-up counts its days from here.
    linked_at = models.DateTimeField(null=True, blank=True)
    # Pacing (whatsapp.pacing): the earliest time the next outgoing message of this number may go.
    next_send_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return self.label or self.name

    @property
    def is_linked(self):
        return bool(self.jid_user)


class SessionActivity(models.Model):
    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        QR_ISSUED = "qr_issued", "QR code issued"
        PAIR_CODE_ISSUED = "pair_code_issued", "Pairing code issued"
        CONNECTED = "connected", "Connected"
        DISCONNECTED = "disconnected", "Disconnected"
        RECONNECTING = "reconnecting", "Reconnecting"
        LOGGED_OUT = "logged_out", "Logged out"
        RESTARTED = "restarted", "Restarted"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="activity")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.session}: {self.kind}"


class WebhookEndpoint(models.Model):
    """Where a tenant wants events POSTed (whatsapp.webhooks). The signing secret is kept encrypted (Fernet, key
    derived from WEBHOOK_ENCRYPTION_KEY or SECRET_KEY) and shown once, when the endpoint is created."""

    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="Event names this endpoint receives.")
    secret_encrypted = models.TextField(help_text="The whsec_ secret, Fernet-encrypted.")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint: stored first, then attempted on commit and on the retry schedule by the
    sweeper (next_attempt_at), until it succeeds or is dead-lettered. `attempt_log` keeps every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed, will retry"
        DEAD = "dead", "Dead (no more retries)"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=40)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    webhook_id = models.CharField(max_length=40, unique=True,
                                  help_text="The webhook-id header (msg_…), same on retries.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    attempt_log = models.JSONField(default=list, encoder=DjangoJSONEncoder,
                                   help_text="[{at, status_code, duration_ms, error, response}] oldest first")
    created_at = models.DateTimeField(default=timezone.now)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="whatsapp_wh_due_idx")]

    def __str__(self):
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class Message(models.Model):
    """One WhatsApp message, sent through the API (out) or received by a session (in). Changed only by
    whatsapp.messaging. Outgoing rows are committed `queued` before anything is sent (the sending pipeline of
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
    text = models.TextField(blank=True)
    caption = models.TextField(blank=True)
    # Media (image/document/audio/video/sticker): the URL it was fetched from (out) and the stored copy, a path
    # relative to MEDIA_ROOT under the tenant's own directory (whatsapp.media).
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
    # Queued and waiting for its pacing slot (whatsapp.pacing) until then; why: the interval or the daily cap.
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

    def __str__(self):
        return f"{self.direction} {self.type} {self.pk} ({self.status})"


class Contact(models.Model):
    """Someone a session talks to: created from inbound and outgoing messages and by a sync of the phone's
    address book (whatsapp.conversations). `lid` is WhatsApp's hidden identity (…@lid) when one is known."""

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
    """One chat of one session (a contact or a group): what the conversation pages list."""

    session = models.ForeignKey(WhatsAppSession, on_delete=models.CASCADE, related_name="conversations")
    chat_jid = models.CharField(max_length=100)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="conversations")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_message_preview = models.CharField(max_length=200, blank=True)
    unread_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["session", "chat_jid"], name="whatsapp_conversation_chat")]

    def __str__(self):
        return str(self.contact or self.group or self.chat_jid)


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
    """This tenant's sending pace per number (whatsapp.pacing). One row per tenant schema; an empty field means
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
