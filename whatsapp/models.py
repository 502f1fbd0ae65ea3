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
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.CharField(max_length=500, blank=True)
    provider_message_id = models.CharField(max_length=128, blank=True, db_index=True)
    # Unique within the tenant's schema (NULLs do not collide): the API's Idempotency-Key header.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    request_hash = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="whatsapp_msg_due_idx")]

    def __str__(self):
        return f"{self.direction} {self.type} {self.pk} ({self.status})"
