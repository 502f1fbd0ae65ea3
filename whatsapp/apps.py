from django.apps import AppConfig


class WhatsappConfig(AppConfig):
    name = "whatsapp"

    def ready(self):
        # Imported here: AppConfig.ready() runs once the models are loaded, which these modules need.
        from billing import entitlements
        from whatsapp.conversations import actions as conversations
        from whatsapp.host import handlers
        from whatsapp.messaging import events as messaging_events
        from whatsapp.messaging import recipients  # noqa: F401  (registers the WHATSAPP_ALLOWED_PHONE_PATTERN check)
        from whatsapp.providers.base import EventKind
        from whatsapp.sessions import events as session_events
        from whatsapp.sessions.actions import count_sessions

        entitlements.USAGE_COUNTERS["max_sessions"] = ("WhatsApp session", count_sessions)

        # The session host calls the features through these (whatsapp.host.handlers); it imports none of them.
        handlers.set_starter(session_events.starting)
        handlers.on_events(session_events.STATUS_KINDS, session_events.apply)
        handlers.on_events((EventKind.MESSAGE, EventKind.RECEIPT), messaging_events.apply_traffic)
        handlers.on_events((EventKind.CONNECTED,), messaging_events.on_connected)
        handlers.set_sender(messaging_events.Sender)
        handlers.on_command("sync_contacts", conversations.sync_on_host)
