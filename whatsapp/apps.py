from django.apps import AppConfig


class WhatsappConfig(AppConfig):
    name = "whatsapp"

    def ready(self):
        # Imported here: AppConfig.ready() runs once the models are loaded, which these modules need.
        from accounts import dashboard
        from billing import entitlements
        from whatsapp.automation import engine as automation
        from whatsapp.automation import tasks as automation_tasks
        from whatsapp.campaigns import events as campaign_events
        from whatsapp.automation import actions as automation_actions
        from whatsapp.conversations import actions as conversations
        from whatsapp.conversations import erasure
        from whatsapp.host import handlers
        from whatsapp.inbox import actions as inbox
        from whatsapp.messaging import erasure as messaging_erasure
        from whatsapp.messaging import events as messaging_events
        from whatsapp.messaging import (
            pacing,
            recipients,  # noqa: F401  (registers the WHATSAPP_ALLOWED_PHONE_PATTERN check)
        )
        from whatsapp.providers.base import EventKind
        from whatsapp.sessions import events as session_events
        from whatsapp.sessions import panels
        from tenants.signals import workspace_deletion_scheduled
        from whatsapp.sessions.actions import count_sessions, stop_for_workspace_deletion
        from whatsapp.webhooks import actions as webhook_actions
        from whatsapp.webhooks import selectors as webhook_selectors

        # A contact's erasure (whatsapp.conversations.erasure): messages first (the webhooks' eraser reads their ids).
        erasure.on_erase(messaging_erasure.erase_messages)
        erasure.on_erase(webhook_actions.erase_deliveries)
        erasure.on_erase(automation_actions.erase_log)

        entitlements.USAGE_COUNTERS["max_sessions"] = ("WhatsApp session", count_sessions)
        workspace_deletion_scheduled.connect(stop_for_workspace_deletion, dispatch_uid="whatsapp.stop_for_deletion")

        # The session host calls the features through these (whatsapp.host.handlers); it imports none of them.
        handlers.set_starter(session_events.starting)
        handlers.on_start(messaging_events.settle_in_doubt)
        handlers.on_events(session_events.STATUS_KINDS, session_events.apply)
        handlers.on_events((EventKind.MESSAGE, EventKind.RECEIPT), messaging_events.apply_traffic)
        handlers.on_events((EventKind.CONNECTED,), messaging_events.on_connected)
        # After messaging stored it: replies to campaigns and opt-out words.
        handlers.on_events((EventKind.MESSAGE,), campaign_events.on_message)
        # Then the receptionist answers it (whatsapp.automation.engine), unless the contact opted out.
        handlers.on_events((EventKind.MESSAGE,), automation.on_message)
        automation.ask_bot = automation_tasks.ask_bot.delay
        automation.escalate = automation_tasks.escalate.delay
        handlers.set_sender(messaging_events.Sender)
        # A contact typing (numbers with show_contact_typing): the conversation's open pages show it.
        handlers.on_events((EventKind.CHAT_PRESENCE,), inbox.contact_typing)
        handlers.on_command("sync_contacts", conversations.sync_on_host)
        # A contact's first message: the new conversation goes to whoever auto-assignment names.
        if inbox.auto_assign_new not in conversations.new_inbound_conversation_hooks:
            conversations.new_inbound_conversation_hooks.append(inbox.auto_assign_new)

        # The session page shows the number's sending queue (its card, its live refresh).
        panels.register(panels.Panel("whatsapp/_session_queue_card.html",
                                     lambda session: {"queue": pacing.queue_stats(session)},
                                     scripts=("js/session_queue.js",)))

        # The dashboard tells the tenant about webhook deliveries that gave up.
        dashboard.add_notice(dashboard.Part("whatsapp/webhooks/_dead_notice.html",
                                            webhook_selectors.dead_deliveries_notice))
