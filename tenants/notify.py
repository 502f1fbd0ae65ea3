"""What the outside world hears about tenant changes: emails to owners and live updates to open pages.

Actions only enqueue `tenants.tasks.announce_tenant_change` on commit; the work below runs in the worker, so
approving stays a short transaction and a slow mail server or Redis never holds up the admin's request.
"""
import logging

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.template.loader import render_to_string
from django.urls import reverse

from core.permissions import Role
from core.tasks import send_email

from .models import Tenant

log = logging.getLogger(__name__)

PLATFORM_GROUP = "platform.admins"

# event -> (email template, subject); events without an entry only update live pages.
EMAILS = {
    "approved": ("tenant_approved", "{name} is approved — your trial has started"),
    "provisioned": ("tenant_approved", "{name} is approved — your trial has started"),
    "rejected": ("tenant_rejected", "Your Switchboard application for {name}"),
    "suspended": ("tenant_suspended", "{name} has been suspended"),
    "reactivated": ("tenant_reactivated", "{name} is active again"),
}


def status_group(tenant_id):
    # Keyed by tenant id, not schema: pending tenants have no schema yet and this is about the public row.
    return f"tenant.{tenant_id}.status"


def status_payload(tenant):
    return {
        "status": tenant.status,
        "status_display": tenant.get_status_display(),
        "progress": tenant.provisioning_progress,
        "error": tenant.provisioning_error,
    }


def _send(*messages):
    """group_send each (group, message) in one event loop; a live update must never fail the caller."""
    layer = get_channel_layer()

    async def send_all():
        for group, message in messages:
            await layer.group_send(group, message)

    try:
        async_to_sync(send_all)()
    except Exception:
        log.warning("live update failed", exc_info=True)


def _status_message(tenant, **extra):
    return status_group(tenant.pk), {"type": "tenant.status", "data": {**status_payload(tenant), **extra}}


def _pending_message():

    count = Tenant.objects.filter(status=Tenant.Status.PENDING).count()
    return PLATFORM_GROUP, {"type": "platform.pending", "data": {"pending": count}}


def tenant_status(tenant):
    _send(_status_message(tenant))


def provisioning_progress(tenant, applied, total):
    _send(_status_message(tenant, applied=applied, total=total))


def pending_count_changed():
    _send(_pending_message())


@shared_task(name="tenants.tasks.announce_tenant_change", acks_late=True)
def announce_tenant_change(tenant_id, event):
    announce(tenant_id, event)


def announce(tenant_id, event):
    """Tell the tenant's open pages, the platform admins' badge and (for some events) the owners by email."""

    tenant = Tenant.objects.select_related("plan").filter(pk=tenant_id).first()
    if tenant is None:
        pending_count_changed()
        return
    _send(_status_message(tenant), _pending_message())
    if event == "registered" and tenant.status == Tenant.Status.PENDING:
        # Still pending: a business waits for a platform admin. (A tenant an admin opened directly is approved
        # in the same transaction and needs nobody's attention.)
        _email_platform_admins(tenant)
    if event in EMAILS:
        template, subject = EMAILS[event]
        _email_owners(tenant, template, subject.format(name=tenant.name))


def platform_admin_emails():
    """Who hears of new sign-ups: ADMIN_EMAIL when set, else every active platform admin."""
    if settings.ADMIN_EMAIL:
        return list(settings.ADMIN_EMAIL)
    User = get_user_model()  # accounts is above tenants: its model through Django, never an import
    return list(User.objects.filter(is_active=True, is_staff=True).exclude(email="")
                .order_by("id").values_list("email", flat=True))


def _email_platform_admins(tenant):
    owner = tenant.memberships.select_related("user").filter(role=Role.OWNER).first()
    body = render_to_string("emails/signup_to_admins.txt", {
        "tenant": tenant, "owner": owner.user if owner else None, "site_name": settings.SITE_NAME,
        "approvals_url": settings.SITE_URL + reverse("platform_approvals"),
    })
    subject = f"[{settings.SITE_NAME}] New sign-up: {tenant.name} is waiting for approval"
    for address in platform_admin_emails():
        send_email.delay(to=address, subject=subject, body=body)


def _email_owners(tenant, template, subject):

    for membership in tenant.memberships.select_related("user").filter(role=Role.OWNER):
        owner = membership.user
        context = {"tenant": tenant, "user": owner, "site_url": settings.SITE_URL}
        body = render_to_string(f"emails/{template}.txt", context)
        send_email.delay(to=owner.email, subject=f"[{settings.SITE_NAME}] {subject}", body=body)


def owner_invited(user, tenant):

    body = render_to_string("emails/owner_invited.txt", {"tenant": tenant, "user": user,
                                                          "site_url": settings.SITE_URL})
    send_email.delay(to=user.email, subject=f"[{settings.SITE_NAME}] Your {tenant.name} workspace is ready", body=body)
