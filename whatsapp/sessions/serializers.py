"""What the sessions API reads and writes."""
from django.core.validators import RegexValidator
from rest_framework import serializers

from core.api import StrictModelSerializer, StrictSerializer, field_with_schema
from core.phones import PATTERN as PHONE_PATTERN
from whatsapp.sessions.actions import NAME_PATTERN

from .models import SessionActivity, WhatsAppSession


class WhatsAppSessionSerializer(StrictModelSerializer):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    linked = serializers.BooleanField(source="is_linked", read_only=True,
                                      help_text="Linked to a phone: restarts resume it without a new scan.")
    qr_available = serializers.SerializerMethodField(
        help_text="A QR code waits for a scan: fetch it from /sessions/{name}/qr.")

    class Meta:
        model = WhatsAppSession
        fields = ["id", "name", "label", "status", "status_display", "status_detail", "should_run", "linked",
                  "phone", "push_name", "qr_available", "qr_expires_at", "pair_code", "pairing_phone",
                  "last_activity_at", "connected_at", "created_at", "show_contact_typing"]
        read_only_fields = fields
        extra_kwargs = {
            "should_run": {"help_text": "The tenant wants it running; a session host runs it."},
            "show_contact_typing": {"help_text": "Conversation pages show when contacts type; this marks the number "
                                                 "online to everyone while it is connected."},
            "pair_code": {"help_text": "8-character code to type on the phone (when linking by phone number)."},
        }

    def get_qr_available(self, session) -> bool:
        return session.status == WhatsAppSession.Status.QR and bool(session.qr_code)


class SessionSettingsSerializer(StrictSerializer):
    show_contact_typing = serializers.BooleanField(
        help_text="Show when contacts type (marks this number online to everyone while connected)")


class SimulatedTypingSerializer(StrictSerializer):
    from_ = field_with_schema(serializers.CharField, {"type": "string", "pattern": PHONE_PATTERN}, max_length=32,
                              validators=[RegexValidator(PHONE_PATTERN)],
                              help_text="The contact's phone, in international format.")
    state = serializers.ChoiceField(choices=["composing", "paused"], required=False, default="composing")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class SessionActivitySerializer(StrictModelSerializer):
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)

    class Meta:
        model = SessionActivity
        fields = ["id", "kind", "kind_display", "message", "created_at"]
        read_only_fields = fields


class SessionCreateSerializer(StrictSerializer):
    name = field_with_schema(serializers.CharField, {"type": "string", "pattern": NAME_PATTERN},
                             help_text="1–64 letters, digits, '-' or '_'; how the API names the session.")
    label = serializers.CharField(max_length=120, required=False, default="", allow_blank=True,
                                  help_text='Shown on the dashboard, e.g. "Front desk".')


class SessionStartSerializer(StrictSerializer):
    use_pairing_code = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Link by an 8-character code typed on the phone instead of a QR scan. "
                  "Default: the installation's WHATSAPP_USE_PAIRING_CODE.")
    phone = serializers.CharField(required=False, default="", allow_blank=True, max_length=32,
                                  help_text="With use_pairing_code: the number to link, in international format.")


class PairingCodeSerializer(StrictSerializer):
    phone = field_with_schema(serializers.CharField, {"type": "string", "pattern": PHONE_PATTERN},
                              help_text="The number to link, in international format, e.g. +14155550123.")
    wait = serializers.BooleanField(
        required=False, default=True,
        help_text="Wait up to a few seconds for the code and return it in pair_code (false: return at once).")


class QrCodeSerializer(StrictSerializer):
    qr = serializers.CharField(help_text="What the QR code encodes; render it yourself or use svg.")
    svg = serializers.CharField(help_text="The QR code as inline SVG markup.")
    expires_at = serializers.DateTimeField(allow_null=True,
                                           help_text="When WhatsApp rotates it; fetch again after this.")


class SimulatedScanSerializer(StrictSerializer):
    phone = field_with_schema(serializers.CharField, {"type": "string", "pattern": PHONE_PATTERN}, max_length=32,
                              validators=[RegexValidator(PHONE_PATTERN)],
                              help_text="The phone that scans, in international format.")
    push_name = serializers.CharField(max_length=120, required=False, default="Simulated user")


class SimulatedInboundSerializer(StrictSerializer):
    # "from" is a Python keyword: declared as from_ and renamed in get_fields.
    from_ = field_with_schema(serializers.CharField, {"type": "string", "pattern": PHONE_PATTERN}, max_length=32,
                              validators=[RegexValidator(PHONE_PATTERN)],
                              help_text="The sender's phone, in international format.")
    type = serializers.ChoiceField(choices=["text", "image", "document", "audio", "video", "sticker", "location"],
                                   default="text")
    text = serializers.CharField(max_length=4096, trim_whitespace=False, required=False, default="",
                                 allow_blank=True, help_text="text: the message; location: its name.")
    caption = serializers.CharField(max_length=1024, required=False, default="", allow_blank=True)
    media = serializers.CharField(required=False, default="", allow_blank=True,
                                  help_text="image/document/audio/video/sticker: the file, base64-encoded.")
    mimetype = serializers.CharField(max_length=120, required=False, default="", allow_blank=True)
    filename = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    latitude = serializers.FloatField(required=False, min_value=-90, max_value=90)
    longitude = serializers.FloatField(required=False, min_value=-180, max_value=180)

    def get_fields(self):
        fields = super().get_fields()
        return {"from": fields.pop("from_"), **fields}
