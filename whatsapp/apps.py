from django.apps import AppConfig


class WhatsappConfig(AppConfig):
    name = "whatsapp"

    def ready(self):
        from billing import entitlements

        from .actions import count_sessions

        entitlements.USAGE_COUNTERS["max_sessions"] = ("WhatsApp session", count_sessions)
        # Registers the system check that refuses an invalid WHATSAPP_ALLOWED_PHONE_PATTERN at startup.
        from . import recipients  # noqa: F401
