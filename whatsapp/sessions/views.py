"""The session pages: the list (create, start, restart, unlink the phone, delete) and one session's live page (QR
code, pairing code, simulated scan, activity). Views parse and check; whatsapp.sessions.actions changes state; the
session host reports what WhatsApp did through the channel layer (whatsapp.sessions.consumers), which these pages
follow live.

Who may do what: every member of the tenant sees the sessions and may start, restart and link them (QR code,
pairing code, simulated scan); only owners and admins create sessions, unlink their phones and delete them.

Action forms post to the page they are on (`action=start`, …), so a refusal by billing_access_required (a
read-only tenant) lands back on that page with the reason. sessions.js sends them with `Accept:
application/json` and gets JSON back instead of a redirect, so the live page never reloads.
"""
import logging
from dataclasses import dataclass, field

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from billing import entitlements
from billing.decorators import billing_access_required
from core.errors import DomainError
from core.permissions import Perm, can, permission_required
from whatsapp.host import commands

from . import actions, panels, simulator
from .events import session_payload, without_linking_codes
from .forms import PhoneForm, SessionCreateForm, SimulateScanForm
from .models import SessionActivity, WhatsAppSession
from .qr import qr_svg

log = logging.getLogger(__name__)
S = WhatsAppSession.Status
ACTIVITY_SHOWN = 50

# Which buttons a status offers (the pages and sessions.js read these lists, so they agree).
START_STATUSES = [S.NEW, S.STOPPED, S.LOGGED_OUT, S.ERROR]  # "Start"; any other status offers "Restart"
NO_LOGOUT_STATUSES = [S.NEW, S.LOGGED_OUT]
LINKABLE_STATUSES = [S.NEW, S.STARTING, S.QR, S.PAIRING, S.STOPPED, S.LOGGED_OUT, S.ERROR]
SCANNABLE_STATUSES = [S.QR, S.PAIRING]

# What to do, for each status (status_detail says what happened).
NEXT_STEP = {
    S.NEW: "Press Start to get a QR code, then scan it with WhatsApp on the phone you want to connect.",
    S.STARTING: "A QR code appears here in a few seconds.",
    S.QR: "On your phone open WhatsApp → Settings → Linked devices → Link a device and point the camera at this "
          "code. WhatsApp replaces it when it expires (the first code lasts 60 seconds, each next one 20), and the "
          "new one appears here by itself; no need to reload.",
    S.PAIRING: "On your phone open WhatsApp → Settings → Linked devices → Link a device → Link with phone number "
               "instead, and type this code.",
    S.CONNECTED: "Ready: your software can send and receive messages through this number.",
    S.RECONNECTING: "Switchboard reconnects by itself. If the phone has no internet, connect it; if this lasts "
                    "more than a few minutes, press Restart.",
    S.DISCONNECTED: "Press Restart to reconnect. If it keeps failing, check that the phone is online and that "
                    "this device is still listed under Linked devices.",
    S.LOGGED_OUT: "This number is no longer linked. Press Start and scan the new QR code to link it again.",
    S.STOPPED: "Press Start to run it again.",
    S.ERROR: "Press Start to try again. If the same error comes back, press Unlink phone and link it again.",
}


def _can_manage(request):
    return can(request.membership, Perm.SESSIONS_MANAGE)


def _session_or_404(name):
    if not actions.NAME_RE.match(name):
        raise Http404("No such session")
    session = WhatsAppSession.objects.filter(name=name).first()
    if session is None:  # another tenant's session is simply not in this schema: the same 404
        raise Http404("No such session")
    return session


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


def _page_context(request):
    return {
        "can_manage": _can_manage(request),
        "simulator": simulator.active(),
        "start_statuses": START_STATUSES,
        "no_logout_statuses": NO_LOGOUT_STATUSES,
        "linkable_statuses": LINKABLE_STATUSES,
        "scannable_statuses": SCANNABLE_STATUSES,
        "next_step": {str(key): value for key, value in NEXT_STEP.items()},
    }


def _usage(tenant):
    plan = entitlements.plan_of(tenant)
    allowed = plan.max_sessions if plan else 0
    in_use = WhatsAppSession.objects.count()
    return {"plan": plan, "allowed": allowed, "in_use": in_use, "full": allowed != -1 and in_use >= allowed}


# --- actions -------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    ok: bool
    message: str
    status: int = 200
    code: str = ""
    session: WhatsAppSession | None = None
    errors: dict = field(default_factory=dict)
    deleted: bool = False


def _on_host(session):
    return commands.holder(connection.schema_name, session.pk) is not None


def _perform(request, session, action):
    """Run one action on `session` for the page's POST. Returns an Outcome; never raises for user errors."""
    tenant, user = request.tenant, request.user
    label = str(session)
    if action in ("logout", "delete") and not _can_manage(request):
        return Outcome(False, "Only an owner or admin can unlink a phone or delete a session.", 403,
                       "permission_denied")
    handed_to_host = _on_host(session)
    try:
        if action == "start":
            # Start means a QR code, even after linking by phone number once ("Get a pairing code" is the
            # other way in).
            session = actions.start_session(tenant, session, acting_user=user, by_qr=True)
            message = f"{label} is starting; its QR code appears in a few seconds."
        elif action == "restart":
            session = actions.restart_session(tenant, session, acting_user=user)
            message = f"{label} is restarting." if handed_to_host else f"{label} is starting."
        elif action == "logout":
            session = actions.logout_session(tenant, session, acting_user=user)
            message = (f"Unlinking the phone from {label}…" if handed_to_host
                       else f"The phone is unlinked from {label}. Start it and scan again to link a phone.")
        elif action == "delete":
            actions.delete_session(tenant, session, acting_user=user)
            return Outcome(True, f"{label} deleted.", deleted=True)
        elif action == "link_phone":
            form = PhoneForm(request.POST, prefix="link")
            if not form.is_valid():
                return Outcome(False, form.errors["phone"][0], 400, "invalid_phone", errors=form.errors)
            phone = form.cleaned_data["phone"]
            session = actions.link_with_phone(tenant, session, acting_user=user, phone=phone)
            message = f"Asking WhatsApp for a pairing code for {phone}; it appears here in a moment."
        elif action == "contact_typing":
            on = request.POST.get("show_contact_typing") == "on"
            session = actions.set_show_contact_typing(tenant, session, on=on, acting_user=user)
            message = (f"{label} shows when contacts type; it appears online to everyone while connected." if on
                       else f"{label} no longer shows when contacts type, nor appears online.")
        elif action == "simulate_scan":
            form = SimulateScanForm(request.POST, prefix="scan")
            if not form.is_valid():
                return Outcome(False, next(iter(form.errors.values()))[0], 400, "invalid_phone", errors=form.errors)
            simulator.scan(session, phone=form.cleaned_data["phone"], push_name=form.cleaned_data["push_name"])
            message = f"Simulated phone {form.cleaned_data['phone']} is scanning…"
        else:
            return Outcome(False, "Unknown action.", 400, "unknown_action")
    except DomainError as exc:
        return Outcome(False, exc.message, exc.status, exc.code)
    session.refresh_from_db()
    return Outcome(True, message, session=session)


def _respond(request, outcome, *, back):
    if _wants_json(request):
        body = {"ok": outcome.ok, "message": outcome.message}
        if outcome.code:
            body["code"] = outcome.code
        if outcome.errors:
            body["errors"] = {name: list(errors) for name, errors in outcome.errors.items()}
        if outcome.session is not None:
            body["session"] = session_payload(outcome.session)
        if outcome.deleted:
            body["redirect"] = reverse("sessions")
        return JsonResponse(body, status=outcome.status)
    if outcome.status == 403:
        raise PermissionDenied(outcome.message)
    if outcome.status == 404:
        raise Http404(outcome.message)
    (messages.success if outcome.ok else messages.error)(request, outcome.message)
    return redirect(reverse("sessions") if outcome.deleted else back)


# --- pages ---------------------------------------------------------------------------------------------------

@never_cache
@billing_access_required
@permission_required(Perm.SESSIONS_READ, POST=Perm.SESSIONS_MANAGE)
def session_list(request):
    form = SessionCreateForm()
    status = 200
    limit_reached = False
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action != "create":
            session = _session_or_404(request.POST.get("session", ""))
            return _respond(request, _perform(request, session, action), back=reverse("sessions"))
        if not _can_manage(request):
            raise PermissionDenied("Only an owner or admin can add sessions.")
        form = SessionCreateForm(request.POST)
        if form.is_valid():
            try:
                session = actions.create_session(request.tenant, acting_user=request.user,
                                                 name=form.cleaned_data["name"], label=form.cleaned_data["label"])
            except DomainError as exc:
                limit_reached = exc.code == "plan_limit_reached"
                form.add_error("name" if exc.code in ("duplicate_name", "invalid_name") else None,
                               exc.message)
                status = exc.status
            else:
                messages.success(request, f"{session} is ready. Press Start and scan the QR code with the phone "
                                          "you want to connect.")
                return redirect("session", name=session.name)
        else:
            status = 400
    sessions = WhatsAppSession.objects.all()
    return render(request, "whatsapp/session_list.html", {
        **_page_context(request),
        "sessions": sessions,
        "form": form,
        "limit_reached": limit_reached,
        "usage": _usage(request.tenant),
    }, status=status)


@never_cache
@billing_access_required
@permission_required(Perm.SESSIONS_READ, POST=Perm.SESSIONS_MANAGE)
def session_detail(request, name):
    session = _session_or_404(name)
    back = reverse("session", kwargs={"name": session.name})
    if request.method == "POST":
        return _respond(request, _perform(request, session, request.POST.get("action", "")), back=back)
    return render(request, "whatsapp/session_detail.html", {
        **_page_context(request),
        "session": session,
        "payload": (session_payload(session) if _can_manage(request)
                    else without_linking_codes(session_payload(session))),
        "activity": SessionActivity.objects.filter(session=session)[:ACTIVITY_SHOWN],
        "next_step_text": NEXT_STEP.get(session.status, ""),
        "phone_form": PhoneForm(prefix="link", initial={"phone": session.pairing_phone}),
        "scan_form": SimulateScanForm(prefix="scan"),
        "panels": panels.render(request, session),
    })


@never_cache
@billing_access_required
@permission_required(Perm.SESSIONS_MANAGE)
def session_qr(request, name):
    """The session's current QR code as SVG (404 when none is waiting). The live page loads it again whenever
    the host reports a new code."""
    session = _session_or_404(name)
    if session.status != S.QR or not session.qr_code:
        raise Http404("No QR code is waiting for a scan")
    return HttpResponse(qr_svg(session.qr_code), content_type="image/svg+xml")
