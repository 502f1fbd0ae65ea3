import datetime
import zoneinfo

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, login, password_validation
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from billing import entitlements as billing_entitlements
from billing import selectors as billing_selectors
from billing.decorators import billing_access_required
from core import once
from core.errors import DomainError
from core.permissions import Perm, Scope, can, permission_required
from tenants.decorators import active_tenant_required
from tenants.resolution import SESSION_KEY

from . import actions, dashboard, members
from .errors import ApiKeyError
from .models import INVITATION_DAYS, MAX_ROTATION_OVERLAP_HOURS, ApiKey, Invitation, Membership, two_factor_users


@permission_required(Perm.PUBLIC)
def landing(request):
    """The public front page: what the product does, the plans with their prices, the way to sign up."""
    return render(request, "landing.html", {"offers": billing_selectors.plan_offers()})


@billing_access_required
@permission_required(Perm.WORKSPACE_READ)
def dashboard_page(request):
    """The workspace's home for its members: the business, its plan and billing, and what the features add."""
    tenant = request.tenant
    return render(request, "tenants/dashboard.html", {
        "tenant": tenant,
        "plan": tenant.plan,
        "trial_days_left": tenant.trial_days_left(),
        "member_count": tenant.memberships.count(),
        "memberships": request.user.memberships.select_related("tenant").exclude(tenant__status="pooled"),
        "notices": dashboard.notices(request),
        "cards": dashboard.cards(request),
    })


def _scopes_from_form(request):
    """The ticked scopes. A POST without the page's scope fieldset (marked by scopes_shown: a script, a page
    loaded before scopes existed) makes a key with every scope, as the API does."""
    return request.POST.getlist("scopes") if "scopes_shown" in request.POST else None


def _expiry_from_form(request, tenant):
    """The end of the day picked in the form's expires_on, in the workspace's time zone; None when left empty."""
    picked = request.POST.get("expires_on", "").strip()
    if not picked:
        return None
    try:
        day = datetime.date.fromisoformat(picked)
    except ValueError:
        raise DomainError(ApiKeyError.INVALID_EXPIRY, "The expiry is not a date; pick one, or leave it empty.")
    try:
        zone = zoneinfo.ZoneInfo(tenant.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = datetime.UTC
    return datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), tzinfo=zone)


@never_cache
@billing_access_required
@permission_required(Perm.API_KEYS_MANAGE)
def api_keys(request):
    """The user's own keys in the current tenant. Creating one is POST -> redirect -> GET: the new key rides to the
    page in the session (never the URL) and is shown once, so a refresh neither repeats the POST nor shows it again."""
    if request.method == "POST":
        try:
            key, raw = actions.create_api_key(user=request.user, tenant=request.tenant,
                                              name=request.POST.get("name", ""),
                                              scopes=_scopes_from_form(request),
                                              expires_at=_expiry_from_form(request, request.tenant))
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Key '{key.name}' created. Copy it now: it will not be shown again.")
            once.keep(request, "api_key", raw)
        return redirect("api_keys")
    keys = ApiKey.objects.filter(user=request.user, tenant=request.tenant).select_related("replaced_by")
    return render(request, "accounts/api_keys.html", {
        "keys": keys, "new_key": once.take(request, "api_key"), "scopes": Scope.choices,
        "overlaps": ROTATION_OVERLAPS, "today": timezone.localdate()})


# The overlaps the page offers (the API takes any whole number of hours up to MAX_ROTATION_OVERLAP_HOURS).
ROTATION_OVERLAPS = [(0, "none: the old key stops now"), (1, "1 hour"), (24, "1 day"), (72, "3 days"),
                     (MAX_ROTATION_OVERLAP_HOURS, "7 days")]


@active_tenant_required
@require_POST
@permission_required(Perm.API_KEYS_MANAGE)
def rotate_api_key(request, key_id):
    """A new secret for one of the user's keys, shown once on the keys page; the old one works for the overlap."""
    key = get_object_or_404(ApiKey, pk=key_id, user=request.user, tenant=request.tenant)
    access = billing_entitlements.access_for(request.tenant)
    if not access.can_write:  # a new key is a change: refused while read-only, like creating one
        messages.error(request, access.message)
        return redirect("api_keys")
    overlap = request.POST.get("overlap_hours", "")
    try:
        new_key, raw = actions.rotate_api_key(key, acting_user=request.user,
                                              overlap_hours=int(overlap) if overlap.isdigit() else -1)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        key.refresh_from_db()
        until = "now" if key.expires_at <= timezone.now() else f"until {key.expires_at:%d %b %Y %H:%M} UTC"
        messages.success(request, f"Key '{key.name}' rotated: copy the new key now, it will not be shown again. "
                                  f"The old one ({key.prefix}…) works {until}.")
        once.keep(request, "api_key", raw)
    return redirect("api_keys")


@active_tenant_required
@require_POST
@permission_required(Perm.API_KEYS_REVOKE_OWN)
def revoke_api_key(request, key_id):
    key = get_object_or_404(ApiKey, pk=key_id, user=request.user, tenant=request.tenant)
    actions.revoke_api_key(key, acting_user=request.user)
    messages.success(request, f"Key '{key.name}' ({key.prefix}…) revoked. Requests using it now fail.")
    return redirect("api_keys")


# --- the team ------------------------------------------------------------------------------------------------------

class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Email address")
    role = forms.ChoiceField(choices=[(str(r), r.label) for r in members.INVITABLE_ROLES], initial="agent")


class AcceptForm(forms.Form):
    full_name = forms.CharField(max_length=120, label="Your name")
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), label="Password")

    def __init__(self, *args, email, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_password(self):
        password = self.cleaned_data["password"]
        password_validation.validate_password(password, get_user_model()(email=self.email))
        return password


def _team_action(request):
    """One POST of the members page; every outcome is a message on the page it redirects to."""
    tenant, action, membership = request.tenant, request.POST.get("action", ""), request.membership
    picked = request.POST.get("member", "")
    target = (Membership.objects.select_related("user").filter(tenant=tenant, pk=int(picked)).first()
              if picked.isdigit() else None)
    invitation_id = request.POST.get("invitation", "")
    invitation = (Invitation.objects.filter(tenant=tenant, pk=int(invitation_id)).first()
                  if invitation_id.isdigit() else None)
    needs = {"invite": Perm.MEMBERS_MANAGE, "resend": Perm.MEMBERS_MANAGE, "revoke": Perm.MEMBERS_MANAGE,
             "role": Perm.MEMBERS_MANAGE, "remove": Perm.MEMBERS_MANAGE, "transfer": Perm.OWNERSHIP_TRANSFER,
             "leave": Perm.MEMBERS_READ}
    if action not in needs:
        messages.error(request, "Unknown action.")
        return
    if not can(membership, needs[action]):
        raise PermissionDenied(f"Your role does not allow this ({needs[action]}).")
    if action in ("resend", "revoke") and invitation is None or action in ("role", "remove", "transfer") and not target:
        raise Http404("No such member or invitation")
    if action == "invite":
        form = InviteForm(request.POST)
        if not form.is_valid():
            messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
            return
        invitation, _ = members.invite_member(tenant, acting_user=request.user, **form.cleaned_data)
        messages.success(request, f"Invitation sent to {invitation.email} ({invitation.role}); it is valid for "
                                  f"{INVITATION_DAYS} days.")
    elif action == "resend":
        members.resend_invitation(invitation, acting_user=request.user)
        messages.success(request, f"Invitation sent again to {invitation.email}; the earlier link no longer works.")
    elif action == "revoke":
        members.revoke_invitation(invitation, acting_user=request.user)
        messages.success(request, f"Invitation of {invitation.email} revoked.")
    elif action == "role":
        changed = members.change_role(target, acting_user=request.user, role=request.POST.get("role", ""))
        messages.success(request, f"{changed.user.email} is now {changed.role}.")
    elif action == "remove":
        members.remove_member(target, acting_user=request.user)
        messages.success(request, f"{target.user.email} was removed; their API keys no longer work.")
    elif action == "transfer":
        members.transfer_ownership(tenant, acting_user=request.user, to_membership=target,
                                   password=request.POST.get("password", ""))
        messages.success(request, f"{target.user.email} is the owner now; you are an admin.")
    elif action == "leave":
        members.remove_member(membership, acting_user=request.user)
        messages.success(request, f"You left {tenant.name}.")
        return "left"


@never_cache
@active_tenant_required
@permission_required(Perm.MEMBERS_READ)
def members_page(request):
    """The team: members with role, 2FA and last login; invitations; role changes, removal, ownership transfer."""
    tenant = request.tenant
    if request.method == "POST":
        try:
            outcome = _team_action(request)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            if outcome == "left":
                return redirect("home")
        return redirect("members")
    rows = list(Membership.objects.filter(tenant=tenant).select_related("user"))
    with_two_factor = two_factor_users([row.user_id for row in rows])
    pending = list(tenant.invitations.pending().select_related("invited_by"))
    expired = list(Invitation.objects.filter(tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True,
                                             expires_at__lte=timezone.now())[:20])
    plan = billing_entitlements.plan_of(tenant)
    allowed = plan.max_users if plan else 0
    used = len(rows) + len(pending)
    return render(request, "accounts/members.html", {
        "rows": [(row, row.user_id in with_two_factor) for row in rows],
        "pending": pending, "expired": expired,
        "invite_form": InviteForm(),
        "roles": [(str(r), r.label) for r in members.INVITABLE_ROLES],
        "can_manage": can(request.membership, Perm.MEMBERS_MANAGE),
        "can_transfer": can(request.membership, Perm.OWNERSHIP_TRANSFER),
        "seats": {"allowed": allowed, "used": used, "full": allowed != -1 and used >= allowed},
    })


@never_cache
@permission_required(Perm.PUBLIC)
def accept_invitation(request, token):
    """The link of an invitation email: signed in with the invited address, join; without an account, make one
    here (the link proves the address) and join; with an account, sign in first."""
    invitation = members.invitation_by_token(token)
    if invitation is None:
        raise Http404("No such invitation")
    context = {"invitation": invitation, "problem": None, "form": None}
    try:
        members.check_acceptable(invitation)
    except DomainError as exc:
        context["problem"] = exc.message
        return render(request, "accounts/invitation.html", context, status=410)
    User = get_user_model()
    has_account = User.objects.filter(email__iexact=invitation.email).exists()
    user = request.user if request.user.is_authenticated else None
    if request.method == "POST":
        try:
            if user is not None:
                membership = members.accept_invitation(invitation, user=user)
            elif not has_account:
                form = AcceptForm(request.POST, email=invitation.email)
                if not form.is_valid():
                    context.update(form=form, has_account=False)
                    return render(request, "accounts/invitation.html", context, status=400)
                user, membership = members.create_invited_account(invitation, **form.cleaned_data)
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                return redirect(f"{reverse('account_login')}?next={request.path}")
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect(request.path)
        request.session[SESSION_KEY] = membership.tenant_id  # the new workspace is the one shown
        messages.success(request, f"Welcome to {membership.tenant.name}. You are {membership.role} here.")
        return redirect("dashboard")
    context.update(has_account=has_account, form=None if user or has_account else AcceptForm(email=invitation.email),
                   login_url=f"{reverse('account_login')}?next={request.path}")
    return render(request, "accounts/invitation.html", context)
