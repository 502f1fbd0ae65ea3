"""The sending settings page (/sending/): the per-number pacing policy and the blocked numbers, and the session
page's queue figures as JSON (polled by static/js/session_queue.js).

Every member sees the settings; owners and admins change them (whatsapp.messaging.policy). Forms post back to the page
(`action=pacing|block|unblock`) and redirect after a change, with the outcome in the messages framework; a form
with errors is shown again with them.
"""
from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from billing.decorators import billing_access_required
from core.errors import DomainError
from core.permissions import Perm, can, permission_required
from whatsapp.sessions.models import WhatsAppSession

from . import pacing, policy
from .models import BlockedNumber

LABELS = {
    "min_interval_ms": "Minimum gap between messages (ms)",
    "jitter_ms": "Random extra gap, up to (ms)",
    "daily_cap": "Messages per number per day",
    "warmup_days": "Warm-up days for a newly linked number",
    "warmup_daily_cap": "Messages per day during warm-up",
}

HELP = {"min_interval_ms": f"At least {pacing.MIN_INTERVAL_FLOOR_MS} ms (one second). "}


class PacingForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Pace messages (recommended)")

    def __init__(self, *args, defaults, **kwargs):
        super().__init__(*args, **kwargs)
        for name in pacing.FIELDS:
            low, high = pacing.BOUNDS[name]
            self.fields[name] = forms.IntegerField(
                required=False, min_value=low, max_value=high, label=LABELS[name],
                help_text=HELP.get(name, "") + f"Empty = the installation's default ({defaults[name]}).",
                error_messages={"min_value": pacing.FLOOR_REASON} if name == "min_interval_ms" else {},
                widget=forms.NumberInput(attrs={"placeholder": defaults[name], "inputmode": "numeric"}))


class BlockForm(forms.Form):
    phone = forms.CharField(max_length=40, label="Phone number",
                            widget=forms.TextInput(attrs={"placeholder": "+14155550123", "inputmode": "tel"}))
    reason = forms.CharField(max_length=255, required=False, label="Reason (optional)")


def _can_manage(request):
    return can(request.membership, Perm.SETTINGS_MANAGE)


def _pacing_initial():
    row = pacing.stored_policy()
    if row is None:
        return {"enabled": True}
    return {"enabled": row.enabled, **{name: getattr(row, name) for name in pacing.FIELDS}}


@never_cache
@billing_access_required
@permission_required(Perm.SETTINGS_READ, POST=Perm.SETTINGS_MANAGE)
def sending_settings(request):
    defaults = pacing.installation_defaults()
    pacing_form = PacingForm(initial=_pacing_initial(), defaults=defaults, prefix="pacing")
    block_form = BlockForm(prefix="block")
    status = 200
    if request.method == "POST":
        if not _can_manage(request):
            raise PermissionDenied("Only an owner or admin can change the sending settings.")
        action = request.POST.get("action", "")
        try:
            if action == "pacing":
                pacing_form = PacingForm(request.POST, defaults=defaults, prefix="pacing")
                if pacing_form.is_valid():
                    policy.update_pacing_policy(request.tenant, acting_user=request.user,
                                                 changes=dict(pacing_form.cleaned_data))
                    messages.success(request, "Pacing saved. It applies to the next message of every number.")
                    return redirect("sending_settings")
            elif action == "block":
                block_form = BlockForm(request.POST, prefix="block")
                if block_form.is_valid():
                    blocked = policy.block_number(request.tenant, acting_user=request.user,
                                                   phone=block_form.cleaned_data["phone"],
                                                   reason=block_form.cleaned_data["reason"])
                    messages.success(request, f"{blocked.phone} is blocked: messages to it are refused.")
                    return redirect("sending_settings")
            elif action == "unblock":
                blocked = BlockedNumber.objects.filter(pk=_int(request.POST.get("id"))).first()
                if blocked is None:
                    raise Http404("No such blocked number")
                policy.unblock_number(request.tenant, blocked, acting_user=request.user)
                messages.success(request, f"{blocked.phone} is no longer blocked.")
                return redirect("sending_settings")
            else:
                messages.error(request, "Unknown action.")
                return redirect("sending_settings")
        except DomainError as exc:
            form = block_form if action == "block" else pacing_form
            form.add_error("phone" if exc.code in ("invalid_phone", "already_blocked") else None,
                           exc.message)
            status = exc.status
        else:
            status = 400
    return render(request, "whatsapp/sending/settings.html", {
        "can_manage": _can_manage(request),
        "pacing_form": pacing_form,
        "block_form": block_form,
        "policy": pacing.describe(),
        "blocked_numbers": BlockedNumber.objects.all(),
    }, status=status)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@never_cache
@billing_access_required
@permission_required(Perm.SESSIONS_READ)
def session_queue(request, name):
    """The session's queue and pacing figures (pacing.queue_stats) for its live page."""
    session = WhatsAppSession.objects.filter(name=name).first()
    if session is None:
        raise Http404("No such session")
    return JsonResponse(pacing.queue_stats(session))
