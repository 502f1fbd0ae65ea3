"""The conversation pages: the list (/conversations/: the shared inbox — conversations per session, filtered by
mine / unassigned / all and by status, with unread counts on the tabs — "Sync contacts", the contacts with search
and delete) and one conversation (/conversations/<id>/: history, live statuses, who answers it and its status,
a send box).

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
from core.permissions import Perm, can, can_manage, permission_required
from whatsapp.automation import actions as automation
from whatsapp.conversations import actions as conversations
from whatsapp.conversations import erasure
from whatsapp.conversations.models import Contact, Conversation
from whatsapp.inbox import actions as inbox
from whatsapp.inbox import presence
from whatsapp.inbox import selectors as inbox_selectors
from whatsapp.inbox.models import AutoAssign, CannedReply, ConversationNote
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
    if action in ("delete_contact", "erase_contact"):
        if not _can_manage(request):
            return _respond(request, False, "Only an owner or admin can delete contacts.", status=403,
                            code="permission_denied", back=back)
        raw = str(request.POST.get("contact", ""))
        contact = Contact.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
        if contact is None:  # unknown, or another tenant's (not in this schema)
            return _respond(request, False, "No such contact.", status=404, code="not_found", back=back)
        label, contact_id = str(contact), contact.pk
        if action == "erase_contact":
            erasure.erase_contact(contact, acting_user=request.user, tenant=request.tenant)
            return _respond(request, True, f"{label} erased, with their messages, media and notes.", back=back,
                            contact_id=contact_id)
        conversations.delete_contact(contact, acting_user=request.user, tenant=request.tenant)
        return _respond(request, True, f"{label} deleted.", back=back, contact_id=contact_id)
    return _respond(request, False, "Unknown action.", status=400, code="unknown_action", back=back)


def _inbox_filters(request):
    """The list's filters from the query string; anything unknown is the default (all, open)."""
    assigned = request.GET.get("assigned", "all")
    status = request.GET.get("status", Conversation.Status.OPEN)
    if assigned not in inbox_selectors.ASSIGNED_FILTERS:
        assigned = "all"
    if status != "any" and status not in inbox_selectors.STATUSES:
        status = Conversation.Status.OPEN
    return assigned, status


@never_cache
@billing_access_required
@permission_required(Perm.CONVERSATIONS_READ, POST=Perm.CONTACTS_MANAGE)
def conversation_list(request):
    if request.method == "POST":
        return _list_action(request)
    sessions = list(WhatsAppSession.objects.all())
    assigned, status = _inbox_filters(request)
    wanted_status = None if status == "any" else status
    rows = inbox_selectors.filtered(Conversation.objects.select_related("session", "contact", "group"),
                                    assigned=assigned, status=wanted_status, membership=request.membership,
                                    tenant=request.tenant)
    rows = inbox_selectors.ordered(rows)[:CONVERSATIONS_SHOWN]
    by_session = {session.pk: [] for session in sessions}
    names = inbox_selectors.member_names(request.tenant)
    for row in rows:
        row.assignee_name = names.get(row.assignee_id, "")
        by_session.setdefault(row.session_id, []).append(row)
    counts = inbox_selectors.counts(tenant=request.tenant, membership=request.membership, status=wanted_status)
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
        "assigned": assigned,
        "status": status,
        "tabs": [(name, label, counts[name]) for name, label in
                 (("mine", "Mine"), ("unassigned", "Unassigned"), ("all", "All"))],
        "statuses": [("open", "Open"), ("pending", "Pending"), ("closed", "Closed"), ("any", "Any status")],
        "member_names": names,
        "me": request.membership.pk if request.membership else None,
        "sessions_with_conversations": set(Conversation.objects.values_list("session_id", flat=True).distinct()),
        "online": sorted(names.get(member, "") for member in presence.online_member_ids(request.tenant.schema_name)
                         if member in names),
    })


def _simulator():
    from django.conf import settings

    return settings.WHATSAPP_PROVIDER == "simulator"


def _recipient(conversation):
    if conversation.contact_id and conversation.contact.phone:
        return conversation.contact.phone
    return conversation.chat_jid


def _attachment_kind(upload):
    """image, video or audio by the browser's word for the file; anything else goes as a document (the sending
    pipeline checks the content itself: whatsapp.messaging.media)."""
    kind = str(getattr(upload, "content_type", "") or "").split("/", 1)[0]
    return kind if kind in ("image", "video", "audio") else "document"


def _send(request, conversation):
    back = reverse("conversation", kwargs={"pk": conversation.pk})
    text = inbox.expand_canned(request.POST.get("text", ""))  # "/price" alone sends the canned reply
    upload = request.FILES.get("file")
    if upload is None and not text.strip():
        return _respond(request, False, "Type a message to send.", status=400, code="missing_text", back=back)
    if len(text) > TEXT_MAX:
        return _respond(request, False, f"A message holds at most {TEXT_MAX} characters.", status=400,
                        code="text_too_long", back=back)
    body = {"session": conversation.session.name, "to": _recipient(conversation), "type": "text", "text": text}
    if upload is not None:  # an attachment: its kind from the file's type, the text as its caption
        body = {"session": body["session"], "to": body["to"], "type": _attachment_kind(upload)}
        if text.strip():
            body["caption"] = text
    quoted = str(request.POST.get("reply_to", "")).strip()
    if quoted:  # "Reply" on a message of this conversation: WhatsApp shows it quoted above the answer
        if not quoted.isdigit() or not Message.objects.filter(pk=int(quoted), conversation=conversation).exists():
            return _respond(request, False, "Reply to a message of this conversation.", status=400,
                            code="unknown_reply_to", back=back)
        body["reply_to"] = int(quoted)
    try:
        with transaction.atomic():
            message, _ = messaging.queue_message(request.tenant, body=body,
                                                 files={"file": upload} if upload is not None else None)
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
        if action in ("assign", "assign_me", "round_robin", "set_status"):
            return _inbox_action(request, conversation, action, back)
        if action in ("add_note", "delete_note"):
            return _note_action(request, conversation, action, back)
        if action == "typing":  # the composer says a member types (or stopped): the contact sees "typing…"
            try:
                inbox.send_typing(conversation, str(request.POST.get("state", "")))
            except DomainError as exc:
                return _respond(request, False, exc.message, status=exc.status, code=exc.code.value, back=back)
            return _respond(request, True, "Typing shown.", back=back)
        if action == "mark_read":  # the open page says it was seen (on load, and as messages arrive)
            conversations.mark_read(conversation)
            return _respond(request, True, "Read.", back=back)
        return _respond(request, False, "Unknown action.", status=400, code="unknown_action", back=back)
    rows = list(Message.objects.select_related("automation").filter(conversation=conversation).order_by("-created_at", "-id")[:MESSAGES_SHOWN])
    rows.reverse()
    names = inbox_selectors.member_names(request.tenant)
    name = conversation.session.name
    return render(request, "whatsapp/conversations/detail.html", {
        "conversation": conversation,
        "session": conversation.session,
        "summary": conversation_summary(conversation, name),
        "messages_shown": [message_payload(row, name) for row in rows],
        "recipient": _recipient(conversation),
        "can_send": conversation.session.status == WhatsAppSession.Status.CONNECTED,
        "can_reply": can(request.membership, Perm.CONVERSATIONS_REPLY),
        "can_manage_notes": bool(request.membership and can_manage(request.membership.role)),
        "simulator": _simulator(),
        "handoff": automation.active_handoff(conversation.session, conversation),
        "assignee_name": names.get(conversation.assignee_id, "") if conversation.assignee_id else "",
        "responders": inbox_selectors.responders(request.tenant),
        "member_names": names,
        "statuses": Conversation.Status.choices,
        "me": request.membership.pk if request.membership else None,
        "notes": inbox_selectors.notes_of(conversation),
        "note_max": inbox.MAX_NOTE_TEXT,
        "canned": [{"code": reply.code, "text": reply.text} for reply in CannedReply.objects.order_by("code")],
    })


def _note_action(request, conversation, action, back):
    """Add an internal note, or delete one (its author, an owner or an admin); POST → redirect → GET."""
    try:
        if action == "add_note":
            inbox.add_note(request.tenant, conversation, request.POST.get("text", ""), acting_user=request.user)
            messages.success(request, "Note added (only members see it).")
        else:
            raw = str(request.POST.get("note", ""))
            note = (ConversationNote.objects.filter(pk=int(raw), conversation=conversation).first()
                    if raw.isdigit() else None)
            if note is None:
                raise Http404("No such note.")
            inbox.delete_note(request.tenant, note, acting_user=request.user, membership=request.membership)
            messages.success(request, "Note deleted.")
    except DomainError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from exc
        messages.error(request, exc.message)
    return redirect(back)


def _inbox_action(request, conversation, action, back):
    """Assign (a member, oneself, the next agent) or change the status; POST → redirect → GET with a notice."""
    try:
        if action == "round_robin":
            row = inbox.assign_round_robin(request.tenant, conversation, acting_user=request.user)
            done = f"Assigned to {inbox_selectors.member_names(request.tenant).get(row.assignee_id)} (round robin)."
        elif action in ("assign", "assign_me"):
            raw = str(request.POST.get("member", "")) if action == "assign" else str(request.membership.pk)
            if raw and not raw.isdigit():
                raise Http404("No such member.")
            member = inbox.member_of(request.tenant, int(raw)) if raw else None
            inbox.assign(request.tenant, conversation, member, acting_user=request.user)
            done = f"Assigned to {member.user.full_name or member.user.email}." if member else "Unassigned."
        else:
            status = str(request.POST.get("status", ""))
            inbox.set_status(request.tenant, conversation, status, acting_user=request.user)
            done = f"Marked {status}."
    except DomainError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from exc
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, done)
    return redirect(back)


@never_cache
@billing_access_required
@permission_required(Perm.CONVERSATIONS_READ, POST=Perm.CANNED_REPLIES_MANAGE)
def canned_replies(request):
    """Canned replies: every member sees them (and uses them in the composer by typing /code); owners and admins
    add, change and delete them. Each form posts here and comes back with a notice (POST → redirect → GET)."""
    back = reverse("canned_replies")
    if request.method == "POST":
        action = request.POST.get("action", "")
        raw = str(request.POST.get("reply", ""))
        reply = CannedReply.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
        try:
            if action == "create":
                reply = inbox.create_canned_reply(request.tenant, code=request.POST.get("code", ""),
                                                  text=request.POST.get("text", ""), acting_user=request.user)
                messages.success(request, f"/{reply.code} saved.")
            elif action in ("update", "delete"):
                if reply is None:  # unknown, or another tenant's (not in this schema)
                    raise Http404("No such canned reply.")
                if action == "update":
                    inbox.update_canned_reply(request.tenant, reply, acting_user=request.user,
                                              code=request.POST.get("code", ""), text=request.POST.get("text", ""))
                    messages.success(request, f"/{reply.code} saved.")
                else:
                    inbox.delete_canned_reply(request.tenant, reply, acting_user=request.user)
                    messages.success(request, f"/{reply.code} deleted.")
            else:
                messages.error(request, "Unknown action.")
        except DomainError as exc:
            messages.error(request, exc.message)
        return redirect(back)
    return render(request, "whatsapp/conversations/canned.html", {
        "replies": CannedReply.objects.order_by("code"),
        "can_manage": can(request.membership, Perm.CANNED_REPLIES_MANAGE),
        "max_text": inbox.MAX_CANNED_TEXT,
    })


@never_cache
@billing_access_required
@permission_required(Perm.SETTINGS_READ, POST=Perm.SETTINGS_MANAGE)
def auto_assign(request):
    """Who gets new conversations: the workspace's setting and each number's (its own, or the workspace's). Owners
    and admins change them; each form posts here with `scope` (workspace or a session name) and comes back with a
    notice (POST → redirect → GET)."""
    back = reverse("auto_assign")
    if request.method == "POST":
        scope = str(request.POST.get("scope", ""))
        session = None
        if scope != "workspace":
            session = WhatsAppSession.objects.filter(name=scope).first()
            if session is None:
                raise Http404("No such session.")
        mode = str(request.POST.get("mode", ""))
        raw = str(request.POST.get("member_id", ""))
        try:
            if mode == "workspace" and session is not None:
                inbox.reset_auto_assign(request.tenant, session, acting_user=request.user)
            else:
                inbox.update_auto_assign(request.tenant, session=session, mode=mode,
                                         member_id=int(raw) if raw.isdigit() else None, acting_user=request.user)
            messages.success(request, f"Auto-assignment of {session or 'the workspace'} saved.")
        except DomainError as exc:
            if exc.status == 404:
                raise Http404(exc.message) from exc
            messages.error(request, exc.message)
        return redirect(back)
    own = {row.session_id: row for row in AutoAssign.objects.filter(session__isnull=False)}
    return render(request, "whatsapp/conversations/auto_assign.html", {
        "workspace": inbox.auto_assign_row(None),
        "sessions": [(session, own.get(session.pk)) for session in WhatsAppSession.objects.order_by("name")],
        "modes": AutoAssign.Mode.choices,
        "responders": inbox_selectors.responders(request.tenant),
        "can_manage": can(request.membership, Perm.SETTINGS_MANAGE),
    })
