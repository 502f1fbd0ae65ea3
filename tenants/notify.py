"""What the outside world hears about tenant changes: emails to owners and live updates to open pages.

Called from actions on commit, never inside a transaction.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string

log = logging.getLogger(__name__)


def status_group(tenant_id):
    return f"tenant.{tenant_id}.status"


PLATFORM_GROUP = "platform.admins"


def _group_send(group, message):
    try:
        async_to_sync(get_channel_layer().group_send)(group, message)
    except Exception:  # a live update is a nicety: a Redis hiccup must not fail the action that committed
        log.warning("live update to %s failed", group, exc_info=True)


def status_payload(tenant):
    return {
        "status": tenant.status,
        "status_display": tenant.get_status_display(),
        "progress": tenant.provisioning_progress,
        "error": tenant.provisioning_error,
    }


def tenant_status(tenant):
    _group_send(status_group(tenant.pk), {"type": "tenant.status", "data": status_payload(tenant)})


def provisioning_progress(tenant, applied, total):
    _group_send(
        status_group(tenant.pk),
        {"type": "tenant.status", "data": {**status_payload(tenant), "applied": applied, "total": total}},
    )


def pending_count_changed():
    from .models import Tenant

    count = Tenant.objects.filter(status=Tenant.Status.PENDING).count()
    _group_send(PLATFORM_GROUP, {"type": "platform.pending", "data": {"pending": count}})


def _owners(tenant):
    return [m.user for m in tenant.memberships.select_related("user").filter(role="owner")]


def _email(tenant, template, subject, **extra):
    from accounts.tasks import send_email

    for owner in _owners(tenant):
        context = {"tenant": tenant, "user": owner, "site_url": settings.SITE_URL, **extra}
        body = render_to_string(f"emails/{template}.txt", context)
        send_email.delay(to=owner.email, subject=f"[Switchboard] {subject}", body=body)


def tenant_approved(tenant):
    _email(tenant, "tenant_approved", f"{tenant.name} is approved — your trial has started")


def tenant_rejected(tenant):
    _email(tenant, "tenant_rejected", f"Your Switchboard application for {tenant.name}")


def tenant_suspended(tenant):
    _email(tenant, "tenant_suspended", f"{tenant.name} has been suspended")


def tenant_reactivated(tenant):
    _email(tenant, "tenant_reactivated", f"{tenant.name} is active again")


def owner_invited(user, tenant):
    from accounts.tasks import send_email

    body = render_to_string("emails/owner_invited.txt", {"tenant": tenant, "user": user,
                                                          "site_url": settings.SITE_URL})
    send_email.delay(to=user.email, subject=f"[Switchboard] Your {tenant.name} workspace is ready", body=body)
