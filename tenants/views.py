from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.errors import DomainError
from core.permissions import Perm, Role, permission_required

from . import actions, notify
from .decorators import platform_admin_required
from .models import Plan, Tenant
from .resolution import SESSION_KEY

STATUS_PAGES = {
    Tenant.Status.PENDING: "awaiting_approval",
    Tenant.Status.PROVISIONING: "provisioning",
    Tenant.Status.REJECTED: "rejected",
    Tenant.Status.SUSPENDED: "suspended",
    Tenant.Status.ACTIVE: "dashboard",
}


@login_required
@permission_required(Perm.SIGNED_IN)
def home(request):
    """Where a logged-in user belongs right now."""
    if request.tenant is not None:
        return redirect(STATUS_PAGES[request.tenant.status])
    if request.user.is_platform_admin:
        return redirect("platform_approvals")
    return render(request, "tenants/no_tenant.html")


def _status_page(request, status, template):
    if request.tenant is None or request.tenant.status != status:
        return redirect("home")
    return render(request, template, {"tenant": request.tenant})


@login_required
@permission_required(Perm.SIGNED_IN)
def awaiting_approval(request):
    return _status_page(request, Tenant.Status.PENDING, "tenants/awaiting_approval.html")


@login_required
@permission_required(Perm.SIGNED_IN)
def provisioning(request):
    return _status_page(request, Tenant.Status.PROVISIONING, "tenants/provisioning.html")


@login_required
@permission_required(Perm.SIGNED_IN)
def rejected(request):
    return _status_page(request, Tenant.Status.REJECTED, "tenants/rejected.html")


@login_required
@permission_required(Perm.SIGNED_IN)
def suspended(request):
    return _status_page(request, Tenant.Status.SUSPENDED, "tenants/suspended.html")


@login_required
@permission_required(Perm.SIGNED_IN)
def tenant_status_json(request):
    """Polling fallback for the status pages when the websocket cannot connect."""
    if request.tenant is None:
        raise Http404
    tenant = Tenant.objects.get(pk=request.tenant.pk)
    return JsonResponse({**notify.status_payload(tenant), "next": reverse(STATUS_PAGES[tenant.status])})


@login_required
@require_POST
@permission_required(Perm.SIGNED_IN)
def switch_tenant(request, tenant_id):
    membership = request.user.memberships.filter(tenant_id=tenant_id).first()
    if membership is None:
        raise Http404
    request.session[SESSION_KEY] = membership.tenant_id
    return redirect("home")


# --- platform admin ------------------------------------------------------------------------------

def _run_admin_action(request, func, success, **kwargs):
    try:
        func(acting_user=request.user, **kwargs)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)


@platform_admin_required
@permission_required(Perm.PLATFORM)
def platform_approvals(request):
    pending = Tenant.objects.filter(status=Tenant.Status.PENDING).select_related("plan").order_by("created_at")
    owners = {}
    for tenant in pending:
        m = tenant.memberships.select_related("user").filter(role=Role.OWNER).first()
        owners[tenant.pk] = m.user if m else None
    failed = Tenant.objects.filter(status=Tenant.Status.PROVISIONING).exclude(provisioning_error="")
    return render(request, "tenants/platform_approvals.html", {
        "pending": [(t, owners[t.pk]) for t in pending],
        "failed": failed,
        "plans": Plan.objects.all(),
    })


@platform_admin_required
@permission_required(Perm.PLATFORM)
def platform_tenants(request):
    status = request.GET.get("status", "")
    tenants = Tenant.objects.exclude(status=Tenant.Status.POOLED).select_related("plan")
    if status in Tenant.Status.values:
        tenants = tenants.filter(status=status)
    q = request.GET.get("q", "").strip()
    if q:
        tenants = tenants.filter(name__icontains=q) | tenants.filter(slug__icontains=q)
    page = Paginator(tenants.order_by("-created_at"), 25).get_page(request.GET.get("page"))
    statuses = [s for s in Tenant.Status if s != Tenant.Status.POOLED]
    return render(request, "tenants/platform_tenants.html", {
        "page": page, "status": status, "q": q, "statuses": statuses,
        "pool_ready": Tenant.objects.filter(status=Tenant.Status.POOLED).count(),
    })


@platform_admin_required
@require_POST
@permission_required(Perm.PLATFORM)
def platform_tenant_action(request, tenant_id, verb):
    tenant = get_object_or_404(Tenant.objects.exclude(status=Tenant.Status.POOLED), pk=tenant_id)
    reason = request.POST.get("reason", "")
    if verb == "approve":
        plan = Plan.objects.filter(pk=request.POST.get("plan") or None).first()
        _run_admin_action(request, lambda **kw: actions.approve_tenant(tenant, plan=plan, **kw),
                          f"{tenant.name} approved; its trial has started.")
    elif verb == "reject":
        _run_admin_action(request, lambda **kw: actions.reject_tenant(tenant, reason=reason, **kw),
                          f"{tenant.name} rejected; the owner has been emailed.")
    elif verb == "suspend":
        _run_admin_action(request, lambda **kw: actions.suspend_tenant(tenant, reason=reason, **kw),
                          f"{tenant.name} suspended.")
    elif verb == "reactivate":
        _run_admin_action(request, lambda **kw: actions.reactivate_tenant(tenant, **kw),
                          f"{tenant.name} is active again.")
    elif verb == "retry":
        _run_admin_action(request, lambda **kw: actions.retry_provisioning(tenant, **kw),
                          f"Provisioning of {tenant.name} restarted.")
    else:
        raise Http404
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("platform_approvals")
    return redirect(next_url)
