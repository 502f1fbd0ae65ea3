from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self):
        from accounts import dashboard  # here: apps register with the dashboard once the registry is ready

        from whatsapp.conversations import erasure

        from . import rollups
        from .views import dashboard_card, usage_card_context

        dashboard.add_card(dashboard.Part("analytics/_dashboard_card.html", dashboard_card))
        dashboard.add_card(dashboard.Part("analytics/_usage_card.html", usage_card_context))
        erasure.on_erase(rollups.erase_chat)  # after whatsapp's erasers (whatsapp.apps runs first): messages gone
