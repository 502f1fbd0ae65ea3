"""The alert history as the pages and the API read it: firing first, then the newest; a workspace sees its own
alerts and only what its own channels were told."""
from django.conf import settings
from django.db.models import Case, IntegerField, Value, When
from django_tenants.utils import schema_context

from whatsapp.webhooks.models import WebhookEndpoint

from .models import Alert


def history(*, tenant=None, state=None, kind=None):
    """Alerts, firing first then newest; `tenant` narrows to one workspace's (None: every alert, the platform's)."""
    alerts = Alert.objects.select_related("tenant")
    if tenant is not None:
        alerts = alerts.filter(tenant=tenant)
    if state:
        alerts = alerts.filter(state=state)
    if kind:
        alerts = alerts.filter(rule=kind)
    return (alerts.annotate(firing_first=Case(When(state=Alert.State.FIRING, then=Value(0)), default=Value(1),
                                              output_field=IntegerField()))
            .order_by("firing_first", "-started_at", "-id"))


def told_workspace(alert):
    """What the workspace's own channels were told (entries before workspace channels existed were the
    platform's)."""
    return [{key: entry.get(key) for key in ("at", "event", "channel", "ok", "error")}
            for entry in alert.notifications if entry.get("to") == "workspace"]


def platform_kinds():
    """Every rule that has fired, for the platform page's filter."""
    return sorted(set(Alert.objects.values_list("rule", flat=True).distinct()))


def settings_payload(tenant, chosen):
    """The workspace's alert settings with what the channels can reach (GET /api/v1/alerts/settings, the page)."""
    with schema_context(tenant.schema_name):
        endpoints = sum(1 for events in WebhookEndpoint.objects.filter(enabled=True).values_list("events", flat=True)
                        if {"alert.firing", "alert.resolved"} & set(events))
    return {"channels": list(chosen.channels), "kinds": list(chosen.kinds),
            "telegram_chat_ids": list(chosen.telegram_chat_ids),
            "telegram_available": bool(settings.TELEGRAM_BOT_TOKEN), "webhook_endpoints": endpoints}
