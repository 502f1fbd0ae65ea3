"""A tenant's WhatsApp sessions (numbers) and their activity log (tenant schema). Changed only by
whatsapp.sessions.actions and, for what WhatsApp reports, whatsapp.sessions.events on the session host."""
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
    # Opt-in: mark the number online ("available") so WhatsApp sends the contacts' typing, which the conversation
    # pages show; everyone then sees this number online while it is connected.
    show_contact_typing = models.BooleanField(default=False)
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
    # Pacing (whatsapp.messaging.pacing): the earliest time the next outgoing message of this number may go.
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
        STARTED = "started", "Started"
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
