"""Alerts (public schema): one row per incident, firing until its rule no longer holds, then resolved. A rule that
holds again within ALERT_COOLDOWN_MINUTES of being resolved reopens the same incident without a new message."""
from django.db import models
from django.utils import timezone


class Alert(models.Model):
    class State(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    key = models.CharField(max_length=200, help_text="The rule and what it is about, e.g. queue_age or "
                                                     "session_down:acme:3")
    rule = models.CharField(max_length=40)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="alerts", help_text="Empty: the platform's own")
    state = models.CharField(max_length=10, choices=State.choices, default=State.FIRING)
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notifications = models.JSONField(default=list, blank=True, help_text="[{at, event, channel, ok, error}]")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["key"], condition=models.Q(state="firing"),
                                               name="alerts_one_firing_per_key")]

    def __str__(self):
        return f"{self.key} ({self.state})"


STATES = Alert.State.values  # the states without their labels, as the platform metrics' API names them


class Kind(models.TextChoices):
    """The alerts a workspace may be told about: its own numbers, webhooks and broadcasts (the rule's name)."""
    SESSION_DOWN = "session_down", "A number is disconnected or logged out"
    WEBHOOKS_DEAD = "webhooks_dead", "A webhook endpoint is dead-lettering deliveries"
    CAMPAIGN_SAFETY_STOP = "campaign_safety_stop", "A broadcast paused itself (safety stop)"


class Channel(models.TextChoices):
    """Where a workspace's alerts go."""
    EMAIL = "email", "Email to the workspace's owners and admins"
    WEBHOOK = "webhook", "Your webhook endpoints subscribed to alert.firing / alert.resolved (signed)"
    TELEGRAM = "telegram", "Telegram chats"


MAX_TELEGRAM_CHATS = 10


class AlertSettings(models.Model):
    """Which of its alerts a workspace is told about and where (public schema: the checker reads every
    workspace's at once). A workspace without a row is told every kind by email, as before settings existed.
    Platform admins are told every alert through the platform's own channels whatever a workspace chooses."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="alert_settings")
    channels = models.JSONField(default=list, help_text="Channel values, e.g. ['email', 'telegram']")
    kinds = models.JSONField(default=list, help_text="Kind values the workspace is told about")
    telegram_chat_ids = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    DEFAULT_CHANNELS = (Channel.EMAIL.value,)

    @classmethod
    def of(cls, tenant):
        """The workspace's settings, unsaved defaults when it never chose."""
        found = cls.objects.filter(tenant=tenant).first()
        return found or cls(tenant=tenant, channels=list(cls.DEFAULT_CHANNELS), kinds=list(Kind.values),
                            telegram_chat_ids=[])

    def __str__(self):
        return f"alert settings of {self.tenant_id}"
