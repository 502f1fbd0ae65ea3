from django.contrib import admin

from .models import Customer, Payment, Price, StripeEvent, Subscription


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["plan", "interval", "amount", "currency", "stripe_price_id"]
    list_editable = ["amount", "currency", "stripe_price_id"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Read-only here: changes go through billing.actions (audited, tenant notified)."""

    list_display = ["tenant", "plan", "interval", "status", "trial_ends_at", "current_period_end", "comped"]
    list_filter = ["status", "plan", "interval"]
    readonly_fields = [f.name for f in Subscription._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "source", "status", "amount", "currency", "reference"]
    list_filter = ["source", "status"]
    readonly_fields = [f.name for f in Payment._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["received_at", "event_id", "type", "processed_at", "unknown_customer", "error"]
    list_filter = ["type", "unknown_customer"]
    readonly_fields = [f.name for f in StripeEvent._meta.fields]


admin.site.register(Customer)
