"""Billing pages: a tenant's Billing page (plans, paying, history), the return from Stripe Checkout, the page
of a tenant suspended for non-payment, in-app notifications, and the platform admin's billing panel.

Thin: parse, check, call billing.actions or the Stripe gateway, render. DomainErrors become page messages.
"""
from csp.decorators import csp_update
from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from audit.models import AuditLog
from core.errors import DomainError
from core.permissions import Perm, can, permission_required
from tenants import actions as tenant_actions
from tenants.decorators import active_tenant_required, platform_admin_required
from tenants.models import Tenant

from . import actions, entitlements, selectors, stripe_gateway
from .decorators import billing_owner_required
from .forms import ChangePlanForm, ExtendTrialForm, ManualPaymentForm, PlanChoiceForm, PlanForm
from .models import Customer, Subscription

S = Subscription.Status


def _is_owner(request):
    return can(request.membership, Perm.BILLING_MANAGE)


def _first_error(form):
    for errors in form.errors.values():
        return errors[0]
    return "Check the form and try again."


# --- the tenant's pages -------------------------------------------------------------------------

# Its forms post here and are answered with a redirect to Stripe Checkout or the customer portal: browsers hold
# those redirects to the page's form-action too.
@csp_update({"form-action": settings.STRIPE_REDIRECT_ORIGINS})
@active_tenant_required
@permission_required(Perm.BILLING_READ)
def billing(request):
    """Reachable whatever the subscription state: a read-only or suspended tenant must be able to pay."""
    tenant = request.tenant
    subscription = entitlements.subscription_of(tenant)
    customer = Customer.objects.filter(tenant=tenant).first()
    owners = tenant.memberships.filter(role="owner").select_related("user")
    return render(request, "billing/billing.html", {
        "tenant": tenant,
        "subscription": subscription,
        "access": entitlements.access_for(tenant),
        "trial_days_left": selectors.trial_days_left(subscription),
        "offers": selectors.plan_offers(subscription.plan if subscription else tenant.plan),
        "payments": tenant.payments.select_related("recorded_by"),
        "stripe": stripe_gateway.stripe_enabled(),
        "has_stripe_subscription": selectors.has_stripe_subscription(subscription),
        "has_portal": bool(customer and customer.stripe_customer_id),
        "is_owner": _is_owner(request),
        "owner_emails": [m.user.email for m in owners],
        "offline_instructions": settings.BILLING_OFFLINE_INSTRUCTIONS,
    })


@billing_owner_required
@require_POST
@permission_required(Perm.BILLING_MANAGE)
def checkout(request):
    """Subscribe through Stripe Checkout: off to Stripe's page, back on billing_return."""
    form = PlanChoiceForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_error(form))
        return redirect("billing")
    plan, interval = form.cleaned_data["plan"], form.cleaned_data["interval"]
    return _to_stripe(request, lambda: stripe_gateway.start_checkout(request.tenant, user=request.user, plan=plan,
                                                                     interval=interval))


@billing_owner_required
@require_POST
@permission_required(Perm.BILLING_MANAGE)
def portal(request):
    """Stripe's customer portal: change plan, card, or cancel."""
    return _to_stripe(request, lambda: stripe_gateway.open_portal(request.tenant, user=request.user))


def _to_stripe(request, open_session):
    """Redirect to the Stripe page `open_session()` returns; refusals and Stripe errors come back as messages."""
    if not stripe_gateway.stripe_enabled():
        messages.error(request, "Online payment is not available: pay as described on this page.")
        return redirect("billing")
    try:
        url = open_session()
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("billing")
    return redirect(url)


@billing_owner_required
@require_POST
@permission_required(Perm.BILLING_MANAGE)
def switch_plan(request):
    """During the trial an owner may try another plan; limits follow at once, a downgrade must fit usage."""
    form = PlanChoiceForm(request.POST)
    if not form.is_valid():
        messages.error(request, _first_error(form))
        return redirect("billing")
    subscription = entitlements.subscription_of(request.tenant)
    if subscription is not None and subscription.stripe_subscription_id:
        messages.error(request, "Your plan is managed in Stripe: change it with Manage billing.")
        return redirect("billing")
    if subscription is None or subscription.status != S.TRIALING:
        messages.error(request, "Plans can be switched freely during the trial only. Choose a plan to pay for "
                                "instead.")
        return redirect("billing")
    plan = form.cleaned_data["plan"]
    try:
        actions.change_plan(request.tenant, acting_user=request.user, plan=plan,
                            interval=form.cleaned_data["interval"])
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Your trial is now on the {plan.name} plan.")
    return redirect("billing")


@active_tenant_required
@permission_required(Perm.BILLING_READ)
def checkout_return(request):
    """Back from Checkout. The webhook that activates the subscription may come after the browser: the
    page polls billing_status until it does."""
    subscription = entitlements.subscription_of(request.tenant)
    return render(request, "billing/return.html", {
        "subscription": subscription,
        "active": subscription is not None and subscription.is_settled,
    })


@active_tenant_required
@permission_required(Perm.BILLING_READ)
def status_json(request):
    subscription = Subscription.objects.select_related("plan").filter(tenant=request.tenant).first()
    access = entitlements.access_for(request.tenant)
    if subscription is None:
        return JsonResponse({"status": None, "label": "No subscription", "plan": None, "active": False,
                             "access": access.level})
    return JsonResponse({
        "status": subscription.status,
        "label": subscription.get_status_display(),
        "plan": subscription.plan.name,
        "active": subscription.is_settled,
        "access": access.level,
    })


@active_tenant_required
@permission_required(Perm.BILLING_READ)
def suspended(request):
    """Where the tenant's pages send a tenant suspended for non-payment."""
    access = entitlements.access_for(request.tenant)
    if access.level != entitlements.SUSPENDED:
        return redirect("dashboard")
    return render(request, "billing/suspended.html", {"tenant": request.tenant, "access": access,
                                                      "can_pay": _is_owner(request)})


@active_tenant_required
@require_POST
@permission_required(Perm.WORKSPACE_READ)
def notifications_read(request):
    tenant_actions.mark_notifications_read(request.tenant, acting_user=request.user)
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("dashboard")
    return redirect(next_url)


# --- platform admin ------------------------------------------------------------------------------

def _manual_payment(tenant, user, data):
    payment = actions.record_manual_payment(tenant, acting_user=user, amount=data["amount"],
                                            interval=data["interval"], plan=data["plan"],
                                            currency=data["currency"], reference=data["reference"])
    return (f"Payment of {selectors.Amount(payment.amount, payment.currency)} recorded; the subscription runs "
            f"until {payment.period_end:%d %b %Y}.")


def _extend_trial(tenant, user, data):
    sub = actions.extend_trial(tenant, acting_user=user, days=data["days"])
    return f"Trial extended to {sub.trial_ends_at:%d %b %Y}."


def _comp(tenant, user, data):
    actions.comp_plan(tenant, acting_user=user, plan=data["plan"])
    return f"{tenant.name} is on {data['plan'].name} at no charge."


def _cancel(tenant, user, data):
    actions.cancel_subscription(tenant, acting_user=user)
    return f"Subscription of {tenant.name} canceled; it is read-only now."


def _change_plan(tenant, user, data):
    actions.change_plan(tenant, acting_user=user, plan=data["plan"], interval=data["interval"] or None)
    return f"{tenant.name} is now on {data['plan'].name}."


PANEL_ACTIONS = {
    "manual_payment": (ManualPaymentForm, _manual_payment),
    "extend_trial": (ExtendTrialForm, _extend_trial),
    "comp": (PlanForm, _comp),
    "change_plan": (ChangePlanForm, _change_plan),
    "cancel": (None, _cancel),
}


@platform_admin_required
@permission_required(Perm.PLATFORM)
def platform_tenant_billing(request, tenant_id):
    tenant = get_object_or_404(Tenant.objects.filter(status__in=[Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED]),
                               pk=tenant_id)
    subscription = entitlements.subscription_of(tenant)
    forms = {name: form_class(prefix=name) for name, (form_class, _) in PANEL_ACTIONS.items() if form_class}
    status = 200
    if request.method == "POST":
        name = request.POST.get("action", "")
        form_class, run = PANEL_ACTIONS.get(name, (None, None))
        if run is None:
            messages.error(request, "Unknown billing action.")
            status = 400
        elif subscription is None:
            messages.error(request, f"{tenant.name} has no subscription yet.")
            status = 409
        else:
            form = form_class(request.POST, prefix=name) if form_class else None
            if form is not None and not form.is_valid():
                messages.error(request, _first_error(form))
                forms[name] = form
                status = 400
            else:
                try:
                    done = run(tenant, request.user, form.cleaned_data if form else {})
                except DomainError as exc:
                    messages.error(request, exc.message)
                    if form is not None:
                        forms[name] = form
                    status = exc.status
                else:
                    messages.success(request, done)
                    return redirect("platform_tenant_billing", tenant_id=tenant.pk)
    return render(request, "billing/platform_tenant_billing.html", {
        "tenant": tenant,
        "subscription": subscription,
        "access": entitlements.access_for(tenant),
        "trial_days_left": selectors.trial_days_left(subscription),
        "payments": tenant.payments.select_related("recorded_by"),
        "audit": AuditLog.objects.filter(tenant=tenant, action__startswith="billing.").select_related("actor")[:20],
        "forms": forms,
        "customer": Customer.objects.filter(tenant=tenant).first(),
    }, status=status)
