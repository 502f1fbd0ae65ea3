from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from billing import selectors as billing_selectors
from billing.decorators import billing_access_required
from core import once
from core.errors import DomainError
from core.permissions import Perm, permission_required
from tenants.decorators import active_tenant_required

from . import actions, dashboard
from .models import ApiKey


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


@never_cache
@billing_access_required
@permission_required(Perm.API_KEYS_MANAGE)
def api_keys(request):
    """The user's own keys in the current tenant. Creating one is POST -> redirect -> GET: the new key rides to the
    page in the session (never the URL) and is shown once, so a refresh neither repeats the POST nor shows it again."""
    if request.method == "POST":
        try:
            key, raw = actions.create_api_key(user=request.user, tenant=request.tenant,
                                              name=request.POST.get("name", ""))
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Key '{key.name}' created. Copy it now: it will not be shown again.")
            once.keep(request, "api_key", raw)
        return redirect("api_keys")
    keys = ApiKey.objects.filter(user=request.user, tenant=request.tenant)
    return render(request, "accounts/api_keys.html", {"keys": keys, "new_key": once.take(request, "api_key")})


@active_tenant_required
@require_POST
@permission_required(Perm.API_KEYS_REVOKE_OWN)
def revoke_api_key(request, key_id):
    key = get_object_or_404(ApiKey, pk=key_id, user=request.user, tenant=request.tenant)
    actions.revoke_api_key(key, acting_user=request.user)
    messages.success(request, f"Key '{key.name}' ({key.prefix}…) revoked. Requests using it now fail.")
    return redirect("api_keys")
