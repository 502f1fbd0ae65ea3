from django.contrib import admin

from .models import Domain, Plan, Tenant


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "max_sessions", "max_users", "messages_per_minute", "is_public", "sort_order"]
    list_editable = ["max_sessions", "max_users", "messages_per_minute", "is_public", "sort_order"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Read-mostly: status changes go through the approval panel so they are audited and emailed."""

    list_display = ["name", "slug", "status", "plan", "trial_ends_at", "created_at"]
    list_filter = ["status", "plan"]
    search_fields = ["name", "slug"]
    readonly_fields = ["schema_name", "status", "approved_at", "created_at", "provisioning_error",
                       "provisioning_progress", "rejection_reason", "suspension_reason"]


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "tenant", "is_primary"]
