import zoneinfo

from rest_framework import serializers

from core.api import VISIBLE_CHAR, StrictModelSerializer, StrictSerializer, field_with_schema, has_visible_text
from core.net import HTTP_URL_PATTERN, check_target
from core.schema import DYNAMIC_ENUM

from .models import LOCALES, Plan, Tenant


def PlanCodeField(**kwargs):  # noqa: N802  (a field, named like one)
    """A plan by its code; the schema lists the codes that exist when it is generated (tenants' dynamic enum)."""
    return field_with_schema(serializers.SlugRelatedField, {"type": "string", DYNAMIC_ENUM: "plans"},
                             slug_field="code", queryset=Plan.objects.all(), **kwargs)


TIME_ZONES = sorted(zoneinfo.available_timezones())


class PlanSerializer(StrictModelSerializer):
    class Meta:
        model = Plan
        fields = ["code", "name", "max_sessions", "max_users", "messages_per_minute", "features"]


class TenantSerializer(StrictModelSerializer):
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


class TenantCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120)
    slug = serializers.SlugField(max_length=63, required=False)
    plan = PlanCodeField()
    owner_email = serializers.EmailField()
    owner_name = serializers.CharField(max_length=120, required=False, default="")


class TenantUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False)
    plan = PlanCodeField(required=False)
    trial_ends_at = serializers.DateTimeField(
        required=False, help_text="When the trial ends; to end it now, give the time now.")


class TenantSettingsSerializer(StrictSerializer):
    webhook_url = field_with_schema(serializers.CharField, {"type": "string", "maxLength": 500, "anyOf": [
        {"pattern": HTTP_URL_PATTERN}, {"maxLength": 0}]}, max_length=500, required=False, allow_blank=True,
        help_text="Where new webhook endpoints point by default; empty for none.")

    def validate_webhook_url(self, value):
        if value:
            check_target(value, resolve=False)  # DomainError invalid_url (a rule beyond the schema)
        return value
    timezone = field_with_schema(serializers.CharField, {"type": "string", "enum": TIME_ZONES}, max_length=64,
                                 required=False, help_text="An IANA time zone, e.g. Asia/Jakarta.")

    def validate_timezone(self, value):
        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError(f"'{value}' is not an IANA time zone, e.g. Asia/Jakarta.")
        return value


class ApproveSerializer(StrictSerializer):
    plan = PlanCodeField(required=False)


class ReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class RejectSerializer(StrictSerializer):
    # The applicant reads it: something to read (reject_tenant answers reason_required otherwise).
    reason = field_with_schema(serializers.CharField, {"type": "string", "minLength": 1, "maxLength": 2000,
                                                       "pattern": rf"^[^\u0000]*{VISIBLE_CHAR}[^\u0000]*$"},
                               max_length=2000, trim_whitespace=False, help_text="Why, for the applicant.")

    def validate_reason(self, value):
        if not has_visible_text(value):  # white space of either regex dialect only: the schema's pattern refuses it
            raise serializers.ValidationError("Give the applicant a reason to read.")
        return value


def _webhook_url_field():
    return field_with_schema(serializers.CharField, {"type": "string", "maxLength": 500, "anyOf": [
        {"pattern": HTTP_URL_PATTERN}, {"maxLength": 0}]}, max_length=500, required=False, allow_blank=True,
        help_text="Where new webhook endpoints point by default; empty for none.")


class WorkspaceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    timezone = serializers.CharField(help_text="IANA time zone: analytics' days and business hours use it.")
    locale = serializers.ChoiceField(choices=LOCALES, help_text="The language the workspace's pages are shown in.")
    webhook_url = serializers.CharField(help_text="The default URL of new webhook endpoints; empty for none.")
    require_2fa = serializers.BooleanField(help_text="Members without two-factor authentication are sent to its "
                                                     "setup page before the workspace's pages (API keys still work).")


class WorkspaceSettingsSerializer(StrictSerializer):
    """PATCH /workspace: any of the settings; the action checks each (invalid_name, invalid_url)."""
    name = field_with_schema(serializers.CharField, {"type": "string", "minLength": 1, "maxLength": 120,
                                                     "pattern": rf"^[^\u0000]*{VISIBLE_CHAR}[^\u0000]*$"},
                             max_length=120, trim_whitespace=False, required=False,
                             help_text="The business's name as its members see it (the slug does not change).")
    timezone = field_with_schema(serializers.CharField, {"type": "string", "enum": TIME_ZONES}, max_length=64,
                                 required=False, help_text="An IANA time zone, e.g. Asia/Jakarta.")
    locale = serializers.ChoiceField(choices=LOCALES, required=False)
    webhook_url = _webhook_url_field()
    require_2fa = serializers.BooleanField(required=False, help_text=(
        "Owners only (permission_denied otherwise); turning it on needs the owner's own two-factor "
        "authentication first (409 two_factor_not_set_up)."))

    def validate_name(self, value):
        if not has_visible_text(value):
            raise serializers.ValidationError("Give the business a name.")
        return value

    def validate_timezone(self, value):
        if value not in zoneinfo.available_timezones():
            raise serializers.ValidationError(f"'{value}' is not an IANA time zone, e.g. Asia/Jakarta.")
        return value
