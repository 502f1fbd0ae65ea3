from django.apps import AppConfig


class WhatsappConfig(AppConfig):
    name = "whatsapp"

    def ready(self):
        from billing import entitlements

        from .actions import count_sessions

        entitlements.USAGE_COUNTERS["max_sessions"] = ("WhatsApp session", count_sessions)
