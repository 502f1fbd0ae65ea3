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
