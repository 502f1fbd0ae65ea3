"""The team of a workspace: invitations by email, roles, removing members, transferring ownership.

Verb-named actions, one transaction each, with their audit rows; emails and socket closings go on commit. Who may
call them is the view's question (core.permissions: members.manage, ownership.transfer); what the team itself
forbids — an admin touching the owner, the last owner leaving, inviting a member twice — is answered here.
"""
import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit import actions as audit
from billing import entitlements
from core.errors import DomainError
from core.permissions import Role
from core.sockets import MEMBER_REMOVED, member_group
from core.tasks import send_email

from .errors import MemberError
from .models import INVITATION_DAYS, ApiKey, Invitation, Membership, hash_invitation_token

log = logging.getLogger(__name__)
INVITABLE_ROLES = (Role.ADMIN, Role.AGENT, Role.VIEWER)  # an owner is made by transferring ownership
INVITABLE_CHOICES = [(str(role), role.label) for role in INVITABLE_ROLES]


def _role(role):
    if role not in INVITABLE_ROLES:
        raise DomainError(MemberError.INVALID_ROLE, "Choose admin, agent or viewer; an owner is made by transferring "
                          "ownership.", {"role": role, "allowed": [str(r) for r in INVITABLE_ROLES]})
    return Role(role)


def _email(email):
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise DomainError(MemberError.INVALID_EMAIL, "Enter a valid email address.", {"email": email})
    return email


def invitation_url(raw_token):
    return settings.SITE_URL + reverse("accept_invitation", kwargs={"token": raw_token})


def _send_invitation(invitation, raw_token):
    inviter = invitation.invited_by.get_full_name() if invitation.invited_by else settings.SITE_NAME
    body = (f"{inviter} invites you to join {invitation.tenant.name} on {settings.SITE_NAME} as {invitation.role}.\n\n"
            f"Accept here (valid until {invitation.expires_at:%d %b %Y %H:%M} UTC):\n{invitation_url(raw_token)}\n\n"
            "If you did not expect this, ignore this email.")
    to, subject = invitation.email, f"[{settings.SITE_NAME}] Join {invitation.tenant.name}"
    transaction.on_commit(lambda: send_email.delay(to=to, subject=subject, body=body))


def _snapshot(invitation):
    return {"email": invitation.email, "role": invitation.role, "expires_at": invitation.expires_at.isoformat()}


@transaction.atomic
def invite_member(tenant, *, acting_user, email, role):
    """Returns (invitation, raw_token). The plan's member limit counts pending invitations (402)."""
    email, role = _email(email), _role(role)
    if tenant.memberships.filter(user__email__iexact=email).exists():
        raise DomainError(MemberError.ALREADY_MEMBER, f"{email} is already a member of {tenant.name}.",
                          {"email": email})
    if tenant.invitations.pending().filter(email__iexact=email).exists():
        raise DomainError(MemberError.ALREADY_INVITED, f"{email} is already invited; send the invitation again "
                          "instead.", {"email": email})
    entitlements.require_within_limit(tenant, "max_users")
    raw = Invitation.generate_token()
    now = timezone.now()
    invitation = Invitation.objects.create(tenant=tenant, email=email, role=role, token_hash=hash_invitation_token(raw),
                                           invited_by=acting_user, sent_at=now,
                                           expires_at=now + timedelta(days=INVITATION_DAYS))
    audit.record("member.invited", actor=acting_user, target=invitation, after=_snapshot(invitation), tenant=tenant)
    _send_invitation(invitation, raw)
    return invitation, raw


@transaction.atomic
def resend_invitation(invitation, *, acting_user):
    """A new link valid for another INVITATION_DAYS days (the old link stops working). An expired invitation takes
    a seat again, so the plan's limit is checked again."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at or invitation.revoked_at:
        raise DomainError(MemberError.INVITATION_NOT_PENDING, f"This invitation was {invitation.status}; invite "
                          f"{invitation.email} again instead.", {"status": invitation.status})
    if invitation.status == "expired":
        entitlements.require_within_limit(invitation.tenant, "max_users")
    before = _snapshot(invitation)
    raw = Invitation.generate_token()
    now = timezone.now()
    invitation.token_hash, invitation.sent_at = hash_invitation_token(raw), now
    invitation.expires_at = now + timedelta(days=INVITATION_DAYS)
    invitation.save(update_fields=["token_hash", "sent_at", "expires_at"])
    audit.record("member.invitation_resent", actor=acting_user, target=invitation, before=before,
                 after=_snapshot(invitation), tenant=invitation.tenant)
    _send_invitation(invitation, raw)
    return invitation, raw


@transaction.atomic
def revoke_invitation(invitation, *, acting_user):
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at:
        raise DomainError(MemberError.INVITATION_NOT_PENDING, "This invitation was accepted already; remove the "
                          "member instead.", {"status": invitation.status})
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit.record("member.invitation_revoked", actor=acting_user, target=invitation,
                     before={"status": "pending"}, after={"status": "revoked", **_snapshot(invitation)},
                     tenant=invitation.tenant)
    return invitation


def invitation_by_token(raw_token):
    """The invitation behind a link, whatever its state (the page says what happened to it), or None."""
    return Invitation.objects.select_related("tenant", "invited_by").filter(
        token_hash=hash_invitation_token(raw_token or "")).first()


def check_acceptable(invitation):
    if invitation.accepted_at:
        raise DomainError(MemberError.INVITATION_ACCEPTED, "This invitation was accepted already.")
    if invitation.revoked_at:
        raise DomainError(MemberError.INVITATION_REVOKED, "This invitation was withdrawn. Ask the workspace's "
                          "owner or an admin for a new one.")
    if invitation.expires_at <= timezone.now():
        raise DomainError(MemberError.INVITATION_EXPIRED, "This invitation has expired. Ask the workspace's owner "
                          "or an admin to send it again.")


@transaction.atomic
def accept_invitation(invitation, *, user):
    """The invited person (signed in with the invited address) joins the workspace with the invitation's role."""
    invitation = Invitation.objects.select_for_update().select_related("tenant").get(pk=invitation.pk)
    check_acceptable(invitation)
    if user.email.lower() != invitation.email.lower():
        raise DomainError(MemberError.WRONG_EMAIL, f"This invitation is for {invitation.email}; you are signed in "
                          f"as {user.email}. Sign out and open the link again.")
    if invitation.tenant.memberships.filter(user=user).exists():
        raise DomainError(MemberError.ALREADY_MEMBER, f"You are already a member of {invitation.tenant.name}.")
    membership = Membership.objects.create(user=user, tenant=invitation.tenant, role=invitation.role)
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit.record("member.joined", actor=user, target=membership, after={"email": user.email, "role": membership.role},
                 tenant=invitation.tenant)
    return membership


@transaction.atomic
def create_invited_account(invitation, *, full_name, password):
    """A new user for the invited address (its email proven by the link), who then joins."""
    from allauth.account.models import EmailAddress  # allauth's models load after the apps are ready

    check_acceptable(invitation)
    User = get_user_model()
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise DomainError(MemberError.ALREADY_MEMBER, "An account with this address exists: sign in to accept.")
    user = User.objects.create_user(email=invitation.email, password=password, full_name=full_name.strip()[:120])
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    audit.record("user.signed_up_by_invitation", actor=user, target=user, after={"email": user.email},
                 tenant=invitation.tenant)
    return user, accept_invitation(invitation, user=user)


def _owners(tenant):
    return tenant.memberships.filter(role=Role.OWNER)


@transaction.atomic
def change_role(membership, *, acting_user, role):
    membership = Membership.objects.select_for_update().select_related("tenant", "user").get(pk=membership.pk)
    role = _role(role)
    if membership.role == Role.OWNER:
        raise DomainError(MemberError.OWNER_PROTECTED, "The owner's role changes only by transferring ownership.")
    before = membership.role
    if before != role:
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record("member.role_changed", actor=acting_user, target=membership,
                     before={"email": membership.user.email, "role": before},
                     after={"email": membership.user.email, "role": role}, tenant=membership.tenant)
    return membership


def _close_sockets(tenant_id, user_id):
    async def send():
        await get_channel_layer().group_send(member_group(tenant_id, user_id), {"type": MEMBER_REMOVED})

    try:
        async_to_sync(send)()
    except Exception:  # the member is removed either way; their pages stop at their next request
        log.exception("closing the sockets of a removed member failed")


@transaction.atomic
def remove_member(membership, *, acting_user):
    """The member leaves the workspace: their API keys for it are revoked at once and their open sockets closed.
    The owner is never removed (transfer ownership first)."""
    membership = Membership.objects.select_for_update().select_related("tenant", "user").get(pk=membership.pk)
    tenant = membership.tenant
    if membership.role == Role.OWNER:
        if membership.user_id == getattr(acting_user, "pk", None) and _owners(tenant).count() == 1:
            raise DomainError(MemberError.LAST_OWNER, "You are the only owner: transfer ownership before leaving.")
        if membership.user_id != getattr(acting_user, "pk", None):
            raise DomainError(MemberError.OWNER_PROTECTED, "The owner cannot be removed.")
    now = timezone.now()
    revoked = list(ApiKey.objects.filter(user=membership.user, tenant=tenant, revoked_at__isnull=True)
                   .values_list("prefix", flat=True))
    ApiKey.objects.filter(user=membership.user, tenant=tenant, revoked_at__isnull=True).update(revoked_at=now)
    audit.record("member.removed", actor=acting_user, target=membership,
                 before={"email": membership.user.email, "role": membership.role},
                 after={"removed": True, "api_keys_revoked": revoked}, tenant=tenant)
    tenant_id, user_id = tenant.pk, membership.user_id
    membership.delete()
    transaction.on_commit(lambda: _close_sockets(tenant_id, user_id))


@transaction.atomic
def transfer_ownership(tenant, *, acting_user, to_membership, password):
    """The acting owner hands the workspace to another member (who becomes owner) and becomes an admin. The
    owner's password confirms it."""
    if not acting_user.check_password(password or ""):
        raise DomainError(MemberError.WRONG_PASSWORD, "That is not your password; nothing changed.")
    mine = Membership.objects.select_for_update().get(tenant=tenant, user=acting_user)
    theirs = Membership.objects.select_for_update().select_related("user").filter(
        tenant=tenant, pk=to_membership.pk).first()
    if theirs is None:
        raise DomainError(MemberError.NOT_A_MEMBER, "That person is not a member of this workspace.")
    if mine.role != Role.OWNER:
        raise DomainError(MemberError.OWNER_PROTECTED, "Only the owner transfers ownership.")
    if theirs.pk == mine.pk:
        raise DomainError(MemberError.INVALID_ROLE, "You are the owner already; choose another member.")
    before = theirs.role
    theirs.role, mine.role = Role.OWNER, Role.ADMIN
    theirs.save(update_fields=["role"])
    mine.save(update_fields=["role"])
    audit.record("member.ownership_transferred", actor=acting_user, target=theirs,
                 before={"owner": acting_user.email, "new_owner_role": before},
                 after={"owner": theirs.user.email, "previous_owner_role": Role.ADMIN}, tenant=tenant)
    return theirs
