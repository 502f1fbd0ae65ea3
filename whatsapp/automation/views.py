"""The Automation page (/automation/, ?session=<name> for one number): the receptionist's settings, keyword rules,
the bot's health and the automation log. Every member sees it; owners and admins change it. Forms post back with
`action=settings|reset|add_rule|toggle_rule|delete_rule|bot_secret` and redirect (POST → redirect → GET)."""
from django.conf import settings as django_settings
from django.contrib import messages
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from accounts.models import Membership
from billing.decorators import billing_access_required
from core import once
from core.errors import DomainError
from core.permissions import Perm, can, permission_required
from whatsapp.sessions.models import WhatsAppSession

from . import actions, selectors
from .forms import RuleForm, SettingsForm
from .models import AutomationLog, KeywordRule

LOG_ROWS = 50


def _can_manage(request):
    return can(request.membership, Perm.SETTINGS_MANAGE)


def _back(session):
    url = reverse("automation")
    return redirect(f"{url}?session={session.name}" if session is not None else url)


@never_cache
@billing_access_required
@permission_required(Perm.SETTINGS_READ, POST=Perm.SETTINGS_MANAGE)
def automation_page(request):
    name = request.GET.get("session")
    session = None
    if name:
        session = WhatsAppSession.objects.filter(name=name).first()
        if session is None:
            raise Http404("No such session")
    row = selectors.effective_row(session) if session is not None else actions.settings_row(None)
    members = Membership.objects.filter(tenant=request.tenant).select_related("user").order_by("id")
    settings_form = SettingsForm(initial=SettingsForm.initial_from(row), prefix="s", members=members)
    rule_form = RuleForm(prefix="r")
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        form = None
        try:
            if action == "settings":
                form = settings_form = SettingsForm(request.POST, prefix="s", members=members)
                if settings_form.is_valid():
                    actions.update_settings(request.tenant, session=session, acting_user=request.user,
                                            changes=settings_form.changes())
                    messages.success(request, "Automation saved.")
                    return _back(session)
            elif action == "reset" and session is not None:
                actions.reset_session_settings(request.tenant, session, acting_user=request.user)
                messages.success(request, f"{session} uses the workspace's automation again.")
                return _back(session)
            elif action == "bot_secret":
                _, secret = actions.rotate_bot_secret(request.tenant, session=session, acting_user=request.user)
                once.keep(request, "bot_secret", secret)
                messages.success(request, "New bot signing secret made; copy it now, it is shown once.")
                return _back(session)
            elif action == "add_rule":
                form = rule_form = RuleForm(request.POST, prefix="r")
                if rule_form.is_valid():
                    rule = actions.create_rule(request.tenant, acting_user=request.user,
                                               fields={**rule_form.cleaned_data, "session": session})
                    messages.success(request, f"Rule “{rule.name}” added.")
                    return _back(session)
            elif action in ("toggle_rule", "delete_rule"):
                rule = KeywordRule.objects.filter(pk=_int(request.POST.get("id"))).first()
                if rule is None:
                    raise Http404("No such rule")
                if action == "delete_rule":
                    actions.delete_rule(request.tenant, rule, acting_user=request.user)
                    messages.success(request, f"Rule “{rule.name}” deleted.")
                else:
                    actions.update_rule(request.tenant, rule, acting_user=request.user,
                                        changes={"enabled": not rule.enabled})
                    messages.success(request, f"Rule “{rule.name}” {'on' if rule.enabled else 'off'}.")
                return _back(session)
            else:
                messages.error(request, "Unknown action.")
                return _back(session)
        except DomainError as exc:
            if form is None:
                messages.error(request, exc.message)
                return _back(session)
            form.add_error(None, exc.message)
            status = exc.status
        else:
            status = 400
    rules = KeywordRule.objects.select_related("session").order_by("priority", "id")
    if session is not None:
        rules = rules.filter(Q(session=session) | Q(session__isnull=True))
    log = AutomationLog.objects.select_related("session", "reply", "conversation")
    if session is not None:
        log = log.filter(session=session)
    return render(request, "whatsapp/automation/page.html", {
        "can_manage": _can_manage(request),
        "cap": django_settings.AUTOREPLY_MAX_PER_CONTACT_PER_HOUR,
        "session": session,
        "sessions": WhatsAppSession.objects.all(),
        "settings": selectors.settings_payload(row, session=session),
        "settings_form": settings_form,
        "rule_form": rule_form,
        "rules": rules.order_by("priority", "id"),
        "log": log[:LOG_ROWS],
        "bot_secret": once.take(request, "bot_secret"),
    }, status=status)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
