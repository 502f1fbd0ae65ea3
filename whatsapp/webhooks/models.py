"""Where a tenant wants events POSTed, and every delivery of every event (tenant schema)."""
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from core.crypto import EncryptedJSONField, SecretTextField


class WebhookEndpoint(models.Model):
    """Where a tenant wants events POSTed (whatsapp.webhooks). The signing secret is kept encrypted on the
    installation's keyring (core.crypto) and shown once, when the endpoint is created."""

    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="Event names this endpoint receives.")
    secret_encrypted = SecretTextField(help_text="The whsec_ secret, Fernet-encrypted.")
    enabled = models.BooleanField(default=True)
    ordered = models.BooleanField(
        default=False, help_text="Deliver this endpoint's events one at a time, in the order they happened: a "
                                 "failing delivery holds the ones after it until it succeeds or is dead-lettered.")
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Backoff of an endpoint that does not answer (timeouts, refused connections): after a failed round the pump
    # leaves it alone until backoff_until, then probes it with one delivery at a time until one succeeds.
    failure_streak = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)

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
    payload = EncryptedJSONField(encoder=DjangoJSONEncoder)  # holds message bodies: encrypted like them
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
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="whatsapp_wh_due_idx"),
            # The pump's claim, per endpoint: its due deliveries in due order, without walking its delivered ones.
            models.Index(fields=["endpoint", "next_attempt_at", "id"], name="whatsapp_wh_endpoint_due_idx",
                         condition=models.Q(status__in=["pending", "failed"])),
            # The head of an ordered endpoint: its oldest delivery still to go.
            models.Index(fields=["endpoint", "created_at", "id"], name="whatsapp_wh_endpoint_head_idx",
                         condition=models.Q(status__in=["pending", "failed"])),
        ]

    def __str__(self):
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"
