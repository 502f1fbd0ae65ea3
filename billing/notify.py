"""Tell a tenant about billing: an in-app notification for its members and an email to its owners."""
from django.conf import settings
from django.db import transaction

from core.permissions import Role
from core.tasks import send_email
from tenants.models import Notification


def tell_tenant(tenant, kind, message, *, subject=None):
    """Inside the action's transaction: the notification row commits with it; the emails leave on commit."""
    Notification.objects.create(tenant=tenant, kind=kind, message=message)
    if subject is None:
        return
    owners = list(tenant.memberships.filter(role=Role.OWNER).values_list("user__email", flat=True))
    body = f"{message}\n\nBilling: {settings.SITE_URL}/billing/\n\n— The Switchboard team\n"

    def send():

        for email in owners:
            send_email.delay(to=email, subject=f"[Switchboard] {subject}", body=body)

    transaction.on_commit(send)
