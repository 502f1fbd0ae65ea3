"""Billing lives in the public schema: one Customer and one Subscription per tenant, its Payments, and every
Stripe event received (stored once, by Stripe's event id)."""
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone


class Interval(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    YEARLY = "yearly", "Yearly"


class Price(models.Model):
    """What a plan costs per interval. Editable by platform admins; Stripe mode needs stripe_price_id."""

    plan = models.ForeignKey("tenants.Plan", on_delete=models.CASCADE, related_name="prices")
    interval = models.CharField(max_length=10, choices=Interval.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="usd")
    stripe_price_id = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "interval"], name="price_plan_interval_unique")]
        ordering = ["plan__sort_order", "interval"]

    def __str__(self):
        return f"{self.plan} {self.interval}: {self.amount} {self.currency.upper()}"


class Customer(models.Model):
    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="billing_customer")
    stripe_customer_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    # The open Checkout session, reused while it is fresh so a double-click never opens two.
    checkout_session_id = models.CharField(max_length=200, blank=True)
    checkout_session_url = models.URLField(max_length=1000, blank=True)
    checkout_key = models.CharField(max_length=60, blank=True, help_text="plan:interval of the open session")
    checkout_created_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Customer of {self.tenant}"


class Subscription(models.Model):
    class Status(models.TextChoices):
        TRIALING = "trialing", "Trial"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Payment failed, retrying"
        READ_ONLY = "read_only", "Read-only (unpaid)"
        SUSPENDED = "suspended", "Suspended (unpaid)"
        CANCELED = "canceled", "Canceled"

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey("tenants.Plan", on_delete=models.PROTECT, related_name="+")
    interval = models.CharField(max_length=10, choices=Interval.choices, default=Interval.MONTHLY)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.TRIALING, db_index=True)
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    comped = models.BooleanField(default=False, help_text="Granted by a platform admin, no payment expected")
    stripe_subscription_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    # When the last Stripe event that moved this subscription's state was created: Stripe delivers out of order
    # and retries for days, so an older event is recorded but never undoes a newer one.
    stripe_state_at = models.DateTimeField(null=True, blank=True)
    read_only_since = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    reminder_3d_sent_at = models.DateTimeField(null=True, blank=True)
    reminder_1d_sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.tenant}: {self.plan} {self.interval} ({self.status})"

    @property
    def is_settled(self):
        """Paid for, or a trial that went through Checkout (Stripe will charge at its end)."""
        return self.status == self.Status.ACTIVE or (
            self.status == self.Status.TRIALING and bool(self.stripe_subscription_id))

    def grace_ends_at(self):
        if self.read_only_since is None:
            return None
        from datetime import timedelta

        return self.read_only_since + timedelta(days=settings.BILLING_GRACE_DAYS)


class Payment(models.Model):
    class Source(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        MANUAL = "manual", "Manual"

    class Status(models.TextChoices):
        PAID = "paid", "Paid"
        OPEN = "open", "Open"
        FAILED = "failed", "Failed"
        VOID = "void", "Void"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="payments")
    source = models.CharField(max_length=10, choices=Source.choices)
    status = models.CharField(max_length=10, choices=Status.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    stripe_invoice_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    receipt_url = models.URLField(max_length=1000, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    reference = models.CharField(max_length=200, blank=True, help_text="Bank transfer reference, invoice number…")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gte=Decimal("0")),
                                              name="payment_amount_not_negative")]

    def __str__(self):
        return f"{self.amount} {self.currency.upper()} {self.status} ({self.source})"


class StripeEvent(models.Model):
    """Every verified webhook event, once. Replays of a stored id change nothing."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    unknown_customer = models.BooleanField(default=False)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.event_id} {self.type}"
