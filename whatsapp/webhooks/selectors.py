"""Read-side queries of webhooks used by other pages."""
from .models import WebhookDelivery


def dead_deliveries_notice(request):
    """The dashboard's notice: how many deliveries of the current tenant were dead-lettered (None: nothing to say)."""
    dead = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.DEAD).count()
    return {"dead_webhooks": dead} if dead else None
