"""The alert pages: a workspace's history (every member) and its alert settings (owners and admins choose, POST ->
redirect -> GET), and the platform admins' history of every alert. Filters ?state= and ?kind= (unknown values
are ignored), 25 a page."""
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from billing.decorators import billing_access_required
from core.errors import DomainError
from core.permissions import Perm, can, permission_required

from . import actions, selectors
from .forms import AlertSettingsForm
from .models import Alert, AlertSettings, Kind

PAGE_ROWS = 25


def _filtered_page(request, *, tenant, kinds):
    state = request.GET.get("state") if request.GET.get("state") in Alert.State.values else ""
    kind = request.GET.get("kind") if request.GET.get("kind") in kinds else ""
    alerts = selectors.history(tenant=tenant, state=state or None, kind=kind or None)
    page = Paginator(alerts, PAGE_ROWS).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return {"page": page, "filters": {"state": state, "kind": kind}, "query": query.urlencode(),
            "states": Alert.State.choices}


@never_cache
@billing_access_required
@permission_required(Perm.ALERTS_READ)
def workspace_alerts(request):
    context = _filtered_page(request, tenant=request.tenant, kinds=Kind.values)
    for alert in context["page"].object_list:
        alert.told = selectors.told_workspace(alert)
    return render(request, "alerts/history.html", {
        **context, "kinds": Kind.choices, "platform": False,
        "may_manage": can(request.membership, Perm.ALERTS_MANAGE)})


@never_cache
@permission_required(Perm.PLATFORM, hide=True)
def alert_history(request):
    kinds = selectors.platform_kinds()
    context = _filtered_page(request, tenant=None, kinds=kinds)
    for alert in context["page"].object_list:
        alert.told = alert.notifications
    return render(request, "alerts/history.html", {**context, "kinds": [(k, k) for k in kinds], "platform": True})


@never_cache
@billing_access_required
@permission_required(Perm.ALERTS_MANAGE)
def alert_settings(request):
    tenant = request.tenant
    chosen = AlertSettings.of(tenant)
    if request.method == "POST":
        form = AlertSettingsForm(request.POST)
        if form.is_valid():
            try:
                actions.update_alert_settings(tenant, acting_user=request.user, **form.cleaned_data)
            except DomainError as exc:
                field = {"telegram_unavailable": "channels", "unknown_channel": "channels",
                         "unknown_alert_kind": "kinds"}.get(exc.code.value, "telegram_chat_ids")
                form.add_error(field, exc.message)
            else:
                messages.success(request, "Alert settings saved.")
                return redirect("alert_settings")
        status = 400
    else:
        form = AlertSettingsForm(initial={"channels": chosen.channels, "kinds": chosen.kinds,
                                          "telegram_chat_ids": "\n".join(chosen.telegram_chat_ids)})
        status = 200
    return render(request, "alerts/settings.html", {"form": form, "facts": selectors.settings_payload(tenant, chosen)},
                  status=status)
