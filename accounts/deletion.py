"""Deleting a workspace, at its owner's request.

An owner confirms with their password and the workspace's name typed out. From then on the workspace is read-only
(billing.entitlements answers workspace_deletion_scheduled for every change), its WhatsApp sessions are stopped and
unlinked (whatsapp listens to tenants.signals.workspace_deletion_scheduled), and an owner may cancel for
WORKSPACE_DELETE_GRACE_DAYS. After that the beat task `accounts.tasks.delete_due_workspaces` cancels a Stripe
subscription, drops the schema and deletes the public rows (tenants.actions.delete_tenant), and the apps remove its
files (tenants.signals.tenant_deleted). The owners are emailed when it is scheduled and when it is done.

Time is passed in (`now`) so tests can move the clock, as billing's do.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit import actions as audit
from billing import stripe_gateway
from core.errors import DomainError
from core.permissions import Perm, require
from core.tasks import send_email
from tenants import actions as tenant_actions
from tenants import signals
from tenants.errors import TenantError
from tenants.models import Tenant
from tenants.schemas import in_public_schema

from .errors import MemberError, WorkspaceError
from .models import Membership

logger = logging.getLogger(__name__)


def deletion_state(tenant):
    return {"scheduled": tenant.deletion_due_at is not None, "requested_at": tenant.deletion_requested_at,
            "deletes_at": tenant.deletion_due_at}


def _owner_emails(tenant):
    return list(Membership.objects.filter(tenant=tenant, role=Membership.Role.OWNER)
                .values_list("user__email", flat=True))


def _email_on_commit(emails, subject, body):
    for to in emails:
        transaction.on_commit(lambda to=to: send_email.delay(to=to, subject=f"[{settings.SITE_NAME}] {subject}",
                                                             body=body))


def _when(moment):
    return f"{moment:%d %b %Y %H:%M} UTC"


@in_public_schema
def schedule_workspace_deletion(tenant, *, acting_user, password, name, now=None):
    """The owner's request: checked (role, password, typed name), then the workspace turns read-only, its sessions
    are stopped and unlinked, and it is deleted after the grace period unless an owner cancels."""
    now = now or timezone.now()
    membership = Membership.objects.filter(tenant=tenant, user=acting_user).first()
    require(membership, Perm.WORKSPACE_DELETE)
    if not acting_user.check_password(password or ""):
        raise DomainError(MemberError.WRONG_PASSWORD, "That is not your password; nothing changed.")
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if (name or "").strip() != tenant.name:
            raise DomainError(WorkspaceError.WRONG_NAME, "Type the workspace's name exactly as shown to confirm; "
                                                         "nothing changed.", {"expected_length": len(tenant.name)})
        if tenant.deletion_due_at is not None:
            raise DomainError(TenantError.DELETION_SCHEDULED,
                              f"This workspace's deletion is already scheduled for {_when(tenant.deletion_due_at)}.",
                              {"deletes_at": tenant.deletion_due_at.isoformat()})
        tenant.deletion_requested_at = now
        tenant.deletion_due_at = now + timedelta(days=settings.WORKSPACE_DELETE_GRACE_DAYS)
        tenant.save(update_fields=["deletion_requested_at", "deletion_due_at"])
        audit.record("tenant.deletion_scheduled", actor=acting_user, target=tenant,
                     after={"deletes_at": tenant.deletion_due_at.isoformat(),
                            "grace_days": settings.WORKSPACE_DELETE_GRACE_DAYS}, tenant=tenant)
        signals.workspace_deletion_scheduled.send(sender=Tenant, tenant=tenant, acting_user=acting_user)
        _email_on_commit(_owner_emails(tenant), f"{tenant.name} will be deleted on {_when(tenant.deletion_due_at)}", (
            f"{acting_user.email} asked for the deletion of the workspace {tenant.name} on {settings.SITE_NAME}.\n\n"
            f"Its WhatsApp sessions were stopped and unlinked, and it is read-only from now on. On "
            f"{_when(tenant.deletion_due_at)} its messages, contacts, conversations, media, sessions, API keys, "
            "webhooks and members are deleted for good.\n\n"
            "Until then an owner can cancel the deletion on the workspace's Settings page:\n"
            f"{settings.SITE_URL}{reverse('workspace_settings')}\n\n"
            "Want a copy of the data first? Request a data export:\n"
            f"{settings.SITE_URL}{reverse('data_export')}\n"))
    return tenant


@in_public_schema
@transaction.atomic
def cancel_workspace_deletion(tenant, *, acting_user):
    """An owner changed their mind within the grace period: the workspace is writable again. Its sessions stay
    stopped and unlinked; they are linked again by scanning a QR code."""
    membership = Membership.objects.filter(tenant=tenant, user=acting_user).first()
    require(membership, Perm.WORKSPACE_DELETE)
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.deletion_due_at is None:
        raise DomainError(TenantError.DELETION_NOT_SCHEDULED, "This workspace is not scheduled for deletion.")
    before = {"deletes_at": tenant.deletion_due_at.isoformat()}
    tenant.deletion_requested_at = tenant.deletion_due_at = None
    tenant.save(update_fields=["deletion_requested_at", "deletion_due_at"])
    audit.record("tenant.deletion_cancelled", actor=acting_user, target=tenant, before=before, tenant=tenant)
    return tenant


@in_public_schema
def delete_workspace(tenant_id, *, now=None):
    """Carry out a deletion whose grace period is over (the beat task calls this). Returns True when it deleted.
    A Stripe subscription is canceled first; if Stripe cannot be reached nothing is deleted and the next run tries
    again."""
    now = now or timezone.now()
    tenant = Tenant.objects.filter(pk=tenant_id, deletion_due_at__lte=now).first()
    if tenant is None:
        return False  # cancelled (or deleted) meanwhile
    owners, name = _owner_emails(tenant), tenant.name
    stripe_gateway.cancel_at_stripe(tenant)
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().filter(pk=tenant_id, deletion_due_at__lte=now).first()
        if tenant is None:
            return False
        tenant_actions.delete_tenant(tenant, acting_user=None, reason="deletion requested by an owner")
        _email_on_commit(owners, f"{name} was deleted", (
            f"The workspace {name} on {settings.SITE_NAME} was deleted today, {_when(now)}, as an owner asked "
            f"{settings.WORKSPACE_DELETE_GRACE_DAYS} days ago: its data, sessions, API keys and members are gone. "
            "Your own account remains and can still sign in.\n"))
    return True


def delete_due_workspaces(now=None):
    """Every workspace whose grace period is over. One failing (Stripe unreachable) does not stop the others."""
    now = now or timezone.now()
    deleted = 0
    for tenant_id in Tenant.objects.filter(deletion_due_at__lte=now).values_list("pk", flat=True):
        try:
            deleted += delete_workspace(tenant_id, now=now)
        except Exception:
            logger.exception("Deleting workspace %s failed; the next run tries again", tenant_id)
    return deleted
