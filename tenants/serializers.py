import zoneinfo

from rest_framework import serializers

from .models import Plan, Tenant


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = ["code", "name", "max_sessions", "max_users", "messages_per_minute", "features"]


class TenantSerializer(serializers.ModelSerializer):
    plan = PlanSerializer(read_only=True)
    trial_days_left = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = [
            "id", "name", "slug", "status", "plan", "trial_ends_at", "trial_days_left", "contact_phone",
            "rejection_reason", "suspension_reason", "provisioning_error", "provisioning_progress",
            "created_at", "approved_at",
        ]

    def get_trial_days_left(self, tenant) -> int | None:
        return tenant.trial_days_left()


class TenantCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    slug = serializers.SlugField(max_length=63, required=False)
    plan = serializers.SlugRelatedField(slug_field="code", queryset=Plan.objects.all())
    owner_email = serializers.EmailField()
    owner_name = serializers.CharField(max_length=120, required=False, default="")


class TenantUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120, required=False)
    plan = serializers.SlugRelatedField(slug_field="code", queryset=Plan.objects.all(), required=False)
    trial_ends_at = serializers.DateTimeField(required=False, allow_null=True)


class TenantSettingsSerializer(serializers.Serializer):
    webhook_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    timezone = serializers.CharField(max_length=64, required=False)

    def validate_timezone(self, value):
        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError(f"'{value}' is not an IANA time zone, e.g. Asia/Jakarta.")
        return value


class ApproveSerializer(serializers.Serializer):
    plan = serializers.SlugRelatedField(slug_field="code", queryset=Plan.objects.all(), required=False)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
