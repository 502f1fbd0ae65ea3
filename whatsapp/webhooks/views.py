"""The webhook pages: the tenant's endpoints (create, with the secret shown once), one endpoint's deliveries with
every attempt and payload, edit, delete, replay one delivery or every dead-lettered one.

Who may do what, as in the API (whatsapp.webhooks.api): every member sees endpoints and deliveries and may replay
deliveries; only owners and admins create, change and delete endpoints (they decide where the tenant's messages
go). Changes need a tenant in good standing: billing_access_required turns them away with the reason.
Views parse and check; whatsapp.webhooks.actions changes state.
"""
import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache

from billing.decorators import billing_access_required
from core import once
from core.errors import DomainError
from core.permissions import Perm, can, permission_required

from . import actions
from . import delivery as wire
from .forms import EndpointForm
from .models import WebhookDelivery, WebhookEndpoint

S = WebhookDelivery.Status
DELIVERIES_PER_PAGE = 25
MANAGE_REFUSED = "Only the business's owner or an admin can manage webhooks."


def _can_manage(request):
    return can(request.membership, Perm.WEBHOOKS_MANAGE)


def _require_manager(request):
    if not _can_manage(request):
        raise PermissionDenied(MANAGE_REFUSED)


def _endpoints():
    return WebhookEndpoint.objects.annotate(
        dead_count=Count("deliveries", filter=Q(deliveries__status=S.DEAD)),
        retrying_count=Count("deliveries", filter=Q(deliveries__status=S.FAILED)),
        delivery_count=Count("deliveries"),
    )


def _attempts(delivery):
    return [{**entry, "at": parse_datetime(entry["at"]) if isinstance(entry.get("at"), str) else entry.get("at")}
            for entry in reversed(delivery.attempt_log)]


def _detail_context(request, endpoint, *, form=None, new_secret=None):
    wanted = request.GET.get("status", "")
    deliveries = endpoint.deliveries.all()
    if wanted in S.values:
        deliveries = deliveries.filter(status=wanted)
    else:
        wanted = ""
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    counts = dict(endpoint.deliveries.values_list("status").annotate(n=Count("id")))
    return {
        "endpoint": endpoint,
        "can_manage": _can_manage(request),
        "form": form or EndpointForm(initial={"url": endpoint.url, "description": endpoint.description,
                                              "events": endpoint.events, "enabled": endpoint.enabled,
                                              "ordered": endpoint.ordered},
                                     with_enabled=True),
        "new_secret": new_secret,
        "page": page,
        "rows": [(d, _attempts(d), json.dumps(d.payload, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder))
                 for d in page.object_list],
        "status_filter": wanted,
        "statuses": [(value, label, counts.get(value, 0)) for value, label in S.choices],
        "total": sum(counts.values()),
        "dead_count": counts.get(S.DEAD, 0),
        "max_attempts": wire.MAX_ATTEMPTS,
    }


@never_cache
@billing_access_required
@permission_required(Perm.WEBHOOKS_READ, POST=Perm.WEBHOOKS_MANAGE)
def webhook_list(request):
    # A new endpoint starts at the workspace's default webhook URL (its settings), when it has one.
    form = EndpointForm(initial={"url": request.tenant.webhook_url} if request.tenant.webhook_url else None)
    status = 200
    if request.method == "POST":
        _require_manager(request)
        form = EndpointForm(request.POST)
        if form.is_valid():
            endpoint, secret = actions.create_endpoint(request.tenant, acting_user=request.user,
                                                       url=form.cleaned_data["url"],
                                                       events=form.cleaned_data["events"],
                                                       description=form.cleaned_data["description"],
                                                       ordered=form.cleaned_data["ordered"])
            messages.success(request, "Endpoint added. Copy its signing secret now: it is not shown again.")
            once.keep(request, f"webhook_secret:{endpoint.pk}", secret)
            return redirect("webhook", pk=endpoint.pk)
        status = 400
    return render(request, "whatsapp/webhooks/list.html", {
        "endpoints": _endpoints(),
        "form": form,
        "can_manage": _can_manage(request),
        "max_attempts": wire.MAX_ATTEMPTS,
    }, status=status)


@never_cache
@billing_access_required
@permission_required(Perm.WEBHOOKS_READ, POST=Perm.WEBHOOKS_MANAGE)
def webhook_detail(request, pk):
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)  # another tenant's id is not in this schema: 404
    back = request.get_full_path()
    if request.method != "POST":
        secret = once.take(request, f"webhook_secret:{endpoint.pk}")
        return render(request, "whatsapp/webhooks/detail.html", _detail_context(request, endpoint, new_secret=secret))

    action = request.POST.get("action", "")
    if action == "update":
        _require_manager(request)
        form = EndpointForm(request.POST, with_enabled=True)
        if not form.is_valid():
            return render(request, "whatsapp/webhooks/detail.html",
                          _detail_context(request, endpoint, form=form), status=400)
        actions.update_endpoint(request.tenant, endpoint, acting_user=request.user, **form.cleaned_data)
        messages.success(request, "Endpoint saved." if endpoint.enabled else
                         "Endpoint saved. It is disabled: it gets no new events until you enable it.")
    elif action == "delete":
        _require_manager(request)
        if request.POST.get("confirm") != "yes":
            messages.error(request, "Tick the box to confirm that the endpoint and its delivery history go.")
            return redirect(back)
        actions.delete_endpoint(request.tenant, endpoint, acting_user=request.user)
        messages.success(request, f"Endpoint {endpoint.url} deleted with its delivery history.")
        return redirect("webhooks")
    elif action == "replay":
        delivery_id = request.POST.get("delivery", "")
        delivery = get_object_or_404(WebhookDelivery, pk=int(delivery_id) if delivery_id.isdigit() else 0,
                                     endpoint=endpoint)
        try:
            actions.replay_delivery(request.tenant, delivery, acting_user=request.user)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Delivery {delivery.webhook_id} is being sent again (same webhook-id).")
    elif action == "replay_dead":
        try:
            replayed = actions.replay_dead(request.tenant, endpoint, acting_user=request.user)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{replayed} dead deliver{'y is' if replayed == 1 else 'ies are'} being "
                                      "sent again." if replayed else "No dead deliveries to replay.")
    else:
        messages.error(request, "Unknown action.")
        return render(request, "whatsapp/webhooks/detail.html", _detail_context(request, endpoint), status=400)
    return redirect(back if action != "update" else reverse("webhook", kwargs={"pk": endpoint.pk}))
