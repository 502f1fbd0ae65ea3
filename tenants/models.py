import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone as dj_timezone
from django_tenants.models import DomainMixin, TenantMixin

UNLIMITED = -1


class Plan(models.Model):
    """What a tenant may use. Limits of -1 mean unlimited. Editable by platform admins."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    max_sessions = models.IntegerField(help_text="WhatsApp sessions; -1 = unlimited")
    max_users = models.IntegerField(help_text="Members including the owner; -1 = unlimited")
    messages_per_minute = models.IntegerField(help_text="Outgoing messages per minute per tenant; -1 = unlimited")
    features = models.JSONField(default=dict, blank=True, help_text='Feature flags, e.g. {"webhooks": true}')
    is_public = models.BooleanField(default=True, help_text="Offered on the signup form")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self):
        return self.name

    @staticmethod
    def describe_limit(value):
        return "Unlimited" if value == UNLIMITED else str(value)

    def limits(self):
        return {
            "max_sessions": self.max_sessions,
            "max_users": self.max_users,
            "messages_per_minute": self.messages_per_minute,
            "features": self.features,
        }


# The languages a workspace's pages may be shown in (Django's own texts, dates and numbers follow it).
LOCALES = [("en", "English"), ("en-gb", "English (UK)"), ("de", "Deutsch"), ("es", "Español"), ("fr", "Français"),
           ("id", "Bahasa Indonesia"), ("it", "Italiano"), ("nl", "Nederlands"), ("pt-br", "Português (Brasil)"),
           ("tr", "Türkçe")]


class Tenant(TenantMixin):
    """A business. Pending sign-ups are tenants without a schema; approval gives them one from the pool."""

    class Status(models.TextChoices):
        POOLED = "pooled", "Pooled"
        PENDING = "pending", "Awaiting approval"
        PROVISIONING = "provisioning", "Provisioning"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        REJECTED = "rejected", "Rejected"

    # Schemas are created by tenants.pool (warm pool or background fallback), never as a save() side effect.
    auto_create_schema = False
    auto_drop_schema = False

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=63, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="tenants")
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    webhook_url = models.URLField(blank=True, max_length=500)
    timezone = models.CharField(max_length=64, default="UTC")
    locale = models.CharField(max_length=10, choices=LOCALES, default="en")
    # Set by an owner: members without two-factor authentication are sent to its setup page before any of the
    # workspace's pages (accounts.middleware.TwoFactorRequiredMiddleware). API keys are not affected.
    require_2fa = models.BooleanField(default=False)
    # Set when an owner asks for the workspace's deletion (accounts.deletion): read-only from then on, and deleted by
    # the beat task once deletion_due_at passes, unless an owner cancels before.
    deletion_requested_at = models.DateTimeField(null=True, blank=True)
    deletion_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    contact_phone = models.CharField(max_length=20, blank=True)
    rejection_reason = models.TextField(blank=True)
    suspension_reason = models.TextField(blank=True)
    provisioning_error = models.TextField(blank=True)
    provisioning_progress = models.PositiveSmallIntegerField(default=0, help_text="Percent, while provisioning")
    created_at = models.DateTimeField(default=dj_timezone.now)
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @staticmethod
    def new_schema_name():
        return f"t_{secrets.token_hex(6)}"

    @staticmethod
    def placeholder_schema_name():
        """Pending and rejected tenants have no schema; this unique name is never created."""
        return f"none_{secrets.token_hex(8)}"

    @property
    def has_schema(self):
        return self.status in (self.Status.POOLED, self.Status.ACTIVE, self.Status.SUSPENDED)

    @property
    def is_active(self):
        return self.status == self.Status.ACTIVE

    def trial_days_left(self, now=None):
        if not self.trial_ends_at:
            return None
        remaining = self.trial_ends_at - (now or dj_timezone.now())
        if remaining <= timedelta(0):
            return 0
        return remaining.days + (1 if remaining.seconds or remaining.microseconds else 0)

    def start_trial(self, now):
        self.trial_ends_at = now + timedelta(days=settings.TRIAL_PERIOD_DAYS)

    @property
    def subdomain(self):
        return f"{self.slug}.{settings.TENANT_BASE_DOMAIN}"


class Domain(DomainMixin):
    pass


class Notification(models.Model):
    """An in-app notice to a tenant's members (trial reminders, billing changes), shown on the dashboard."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40)
    message = models.TextField()
    created_at = models.DateTimeField(default=dj_timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.tenant}: {self.kind}"
