"""The conversation pages: the list (/conversations/: conversations per session, "Sync contacts", the contacts
with search and delete) and one conversation (/conversations/<id>/: history, live statuses, a test send box).

Views parse and check; whatsapp.conversations.actions and whatsapp.messaging.actions change state; whatsapp.live and the
consumers of whatsapp.inbox.consumers keep open pages current. Who may do what follows the API: every
member reads, syncs and sends (members send through the API with their own keys too); only owners and admins
delete contacts. Forms post to the page they are on; conversations.js sends them with `Accept:
application/json` and gets JSON back, so the live page never reloads.
"""
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from billing.decorators import billing_access_required
from core.errors import DomainError
from core.permissions import Perm, can, permission_required
from whatsapp.automation import actions as automation
from whatsapp.conversations import actions as conversations
from whatsapp.conversations.models import Contact, Conversation
from whatsapp.live import conversation_summary
from whatsapp.messaging import actions as messaging
from whatsapp.messaging.models import Message
from whatsapp.messaging.payloads import message_payload
from whatsapp.sessions.models import WhatsAppSession

CONVERSATIONS_SHOWN = 200
CONTACTS_SHOWN = 200
MESSAGES_SHOWN = 200
TEXT_MAX = 4096


def _can_manage(request):
    return can(request.membership, Perm.CONTACTS_MANAGE)


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


def _respond(request, ok, message, *, status=200, code="", back, **extra):
    if _wants_json(request):
        body = {"ok": ok, "message": message, **extra}
        if code:
            body["code"] = code
        return JsonResponse(body, status=status)
    if status == 403:
        raise PermissionDenied(message)
    if status == 404:
        raise Http404(message)
    (messages.success if ok else messages.error)(request, message)
    return redirect(back)


def _contacts(query):
    contacts = Contact.objects.select_related("session")
    query = query.strip()[:100]
    if query:
        match = Q(name__icontains=query) | Q(push_name__icontains=query) | Q(jid__icontains=query)
        digits = "".join(ch for ch in query if ch.isdigit())
        if digits:
            match |= Q(phone__contains=digits)
        contacts = contacts.filter(match)
    return contacts


def _list_action(request):
    back = reverse("conversations")
    action = request.POST.get("action", "")
    if action == "sync":
        session = WhatsAppSession.objects.filter(name=request.POST.get("session", "")).first()
        if session is None:
            return _respond(request, False, "No such session.", status=404, code="not_found", back=back)
        try:
            conversations.request_sync(session)
        except DomainError as exc:
            return _respond(request, False, exc.message, status=exc.status, code=exc.code.value, back=back)
        return _respond(request, True, f"Reading the contacts and groups of {session}'s phone…", back=back,
                        session_id=session.pk)
    if action == "delete_contact":
        if not _can_manage(request):
            return _respond(request, False, "Only an owner or admin can delete contacts.", status=403,
                            code="permission_denied", back=back)
        raw = str(request.POST.get("contact", ""))
        contact = Contact.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
        if contact is None:  # unknown, or another tenant's (not in this schema)
            return _respond(request, False, "No such contact.", status=404, code="not_found", back=back)
        label, contact_id = str(contact), contact.pk
        conversations.delete_contact(contact, acting_user=request.user, tenant=request.tenant)
        return _respond(request, True, f"{label} deleted.", back=back, contact_id=contact_id)
    return _respond(request, False, "Unknown action.", status=400, code="unknown_action", back=back)


@never_cache
@billing_access_required
@permission_required(Perm.CONVERSATIONS_READ, POST=Perm.CONTACTS_MANAGE)
def conversation_list(request):
    if request.method == "POST":
        return _list_action(request)
    sessions = list(WhatsAppSession.objects.all())
    rows = (Conversation.objects.select_related("session", "contact", "group")
            .order_by(F("last_message_at").desc(nulls_last=True), "-id")[:CONVERSATIONS_SHOWN])
    by_session = {session.pk: [] for session in sessions}
    for row in rows:
        by_session.setdefault(row.session_id, []).append(row)
    query = request.GET.get("q", "")
    contacts = _contacts(query)
    return render(request, "whatsapp/conversations/list.html", {
        "groups": [(session, by_session.get(session.pk, [])) for session in sessions],
        "contacts": contacts[:CONTACTS_SHOWN],
        "contact_total": contacts.count(),
        "contacts_shown": CONTACTS_SHOWN,
        "query": query,
        "can_manage": _can_manage(request),
        "simulator": _simulator(),
    })


def _simulator():
    from django.conf import settings

    return settings.WHATSAPP_PROVIDER == "simulator"


def _recipient(conversation):
    if conversation.contact_id and conversation.contact.phone:
        return conversation.contact.phone
    return conversation.chat_jid


def _send(request, conversation):
    back = reverse("conversation", kwargs={"pk": conversation.pk})
    text = request.POST.get("text", "")
    if not text.strip():
        return _respond(request, False, "Type a message to send.", status=400, code="missing_text", back=back)
    if len(text) > TEXT_MAX:
        return _respond(request, False, f"A message holds at most {TEXT_MAX} characters.", status=400,
                        code="text_too_long", back=back)
    body = {"session": conversation.session.name, "to": _recipient(conversation), "type": "text", "text": text}
    try:
        with transaction.atomic():
            message, _ = messaging.queue_message(request.tenant, body=body)
            # A person answers here: automation stays silent in this conversation while they talk.
            automation.set_handoff(request.tenant, conversation.session, conversation=conversation, on=True,
                                   reason="staff_dashboard")
    except DomainError as exc:
        return _respond(request, False, exc.message, status=exc.status, code=exc.code.value, back=back)
    return _respond(request, True, "Queued.", status=202, back=back,
                    message_data=message_payload(message, conversation.session.name))


@never_cache
@billing_access_required
@permission_required(Perm.CONVERSATIONS_READ, POST=Perm.CONVERSATIONS_REPLY)
def conversation_detail(request, pk):
    conversation = (Conversation.objects.select_related("session", "contact", "group").filter(pk=pk).first())
    if conversation is None:  # another tenant's conversation is not in this schema: the same 404
        raise Http404("No such conversation")
    back = reverse("conversation", kwargs={"pk": pk})
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "send":
            return _send(request, conversation)
        if action in ("handoff_on", "handoff_off"):  # a person takes the conversation from automation, or gives it back
            automation.set_handoff(request.tenant, conversation.session, conversation=conversation,
                                   on=action == "handoff_on", acting_user=request.user, reason="manual")
            messages.success(request, "You have this conversation: automation stays silent here."
                             if action == "handoff_on" else "Automation answers this conversation again.")
            return redirect(back)
        if action == "mark_read":  # the open page says it was seen (on load, and as messages arrive)
            conversations.mark_read(conversation)
            return _respond(request, True, "Read.", back=back)
        return _respond(request, False, "Unknown action.", status=400, code="unknown_action", back=back)
    rows = list(Message.objects.filter(conversation=conversation).order_by("-created_at", "-id")[:MESSAGES_SHOWN])
    rows.reverse()
    name = conversation.session.name
    return render(request, "whatsapp/conversations/detail.html", {
        "conversation": conversation,
        "session": conversation.session,
        "summary": conversation_summary(conversation, name),
        "messages_shown": [message_payload(row, name) for row in rows],
        "recipient": _recipient(conversation),
        "can_send": conversation.session.status == WhatsAppSession.Status.CONNECTED,
        "can_reply": can(request.membership, Perm.CONVERSATIONS_REPLY),
        "simulator": _simulator(),
        "handoff": automation.active_handoff(conversation.session, conversation),
    })
