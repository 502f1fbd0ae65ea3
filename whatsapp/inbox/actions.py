"""Changing the shared inbox: who answers a conversation (by hand, or the next agent by round robin), its status
(open, pending, closed), canned replies and internal notes. One transaction each, with its audit row; open pages
hear of assignments and statuses on commit.

Called by whatsapp.inbox.api and whatsapp.inbox.views, which check the caller's permission (conversations.reply)
first. A member id is the workspace's accounts.Membership id: another workspace's is not found (404), like an
unknown one.
"""
import logging
import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import Membership
from audit import actions as audit
from billing import entitlements
from core.api import has_visible_text
from core.errors import CommonError, DomainError
from core.permissions import Perm, allows, can_manage
from tenants.models import Tenant
from whatsapp.conversations.models import Conversation
from whatsapp.host import commands
from whatsapp.providers.base import CHAT_PRESENCE_STATES
from whatsapp.sessions.models import WhatsAppSession
from whatsapp.live import conversation_group, conversation_summary, conversations_group

from . import presence, selectors
from .errors import InboxError
from .models import AutoAssign, CannedReply, ConversationNote, RoundRobin

log = logging.getLogger(__name__)

CODE_PATTERN = r"^/?[a-zA-Z0-9_-]{1,32}$"
MAX_CANNED_TEXT = 4096  # what one WhatsApp text holds
MAX_CANNED_REPLIES = 500
MAX_NOTE_TEXT = 4000


def member_of(tenant, member_id):
    """The workspace's member with this membership id; 404 not_found for an unknown one or another workspace's."""
    member = (Membership.objects.filter(pk=member_id, tenant=tenant).select_related("user").first()
              if isinstance(member_id, int) and not isinstance(member_id, bool) else None)
    if member is None:
        raise DomainError(CommonError.NOT_FOUND, "No such member in this workspace.", {"member_id": member_id})
    return member


def _locked(conversation):
    return Conversation.objects.select_for_update(of=("self",)).select_related("session", "contact", "group").get(
        pk=conversation.pk)


def assign(tenant, conversation, member, *, acting_user):
    """Give `conversation` to `member` (a Membership of `tenant`), or take it from whoever has it (member None).
    400 assignee_cannot_reply for a member whose role does not answer conversations."""
    if member is not None and not allows(member.role, Perm.CONVERSATIONS_REPLY):
        raise DomainError(InboxError.ASSIGNEE_CANNOT_REPLY,
                          f"{member.user.email} reads conversations but cannot answer them; give it to someone "
                          "who can.", {"member_id": member.pk, "role": member.role})
    with transaction.atomic():
        row = _locked(conversation)
        return _assign_locked(tenant, row, member, acting_user=acting_user, how="manual")


def assign_round_robin(tenant, conversation, *, acting_user, how="round_robin"):
    """Give `conversation` to the next member of the round robin (whatsapp.inbox.selectors.round_robin_pool: the
    online agents — all agents when none is online — in membership order, starting after the one who got the last
    conversation this way). 409 no_agents when nobody answers conversations."""
    pool = selectors.round_robin_pool(tenant, online=presence.online_member_ids(connection.schema_name))
    if not pool:
        raise DomainError(InboxError.NO_AGENTS, "Nobody in this workspace answers conversations; invite an agent.")
    with transaction.atomic():
        cursor, _ = RoundRobin.objects.select_for_update().get_or_create(pk=1)
        member = next((m for m in pool if cursor.last_member_id is not None and m.pk > cursor.last_member_id),
                      pool[0])
        cursor.last_member_id, cursor.updated_at = member.pk, timezone.now()
        cursor.save(update_fields=["last_member_id", "updated_at"])
        row = _locked(conversation)
        return _assign_locked(tenant, row, member, acting_user=acting_user, how=how)


# --- auto-assignment of new conversations ------------------------------------------------------------------------

def auto_assign_scope(session):
    return f"session:{session.pk}" if session is not None else "workspace"


def auto_assign_row(session=None):
    """The stored auto-assignment of the number (or of the workspace, session None), or an unsaved "off"."""
    return AutoAssign.objects.filter(scope=auto_assign_scope(session)).first() or AutoAssign(
        session=session, scope=auto_assign_scope(session))


def effective_auto_assign(session_id):
    """The number's own auto-assignment, else the workspace's (stored or off)."""
    own = f"session:{session_id}"
    rows = {r.scope: r for r in AutoAssign.objects.filter(scope__in=[own, "workspace"])}
    return rows.get(own) or rows.get("workspace") or AutoAssign(scope="workspace")


def _auto_assign_snapshot(row):
    return {"mode": row.mode, "member_id": row.member_id}


def update_auto_assign(tenant, *, session=None, mode, member_id=None, acting_user):
    """Set who gets new conversations of the workspace (session None) or of one number: off, round_robin, or
    member (member_id: a member of this workspace who answers conversations). 400 invalid_auto_assign, 404 for a
    member of another workspace, 400 assignee_cannot_reply for one who cannot answer."""
    if mode not in AutoAssign.Mode.values:
        raise DomainError(InboxError.INVALID_AUTO_ASSIGN, f"mode is one of {', '.join(AutoAssign.Mode.values)}.",
                          {"mode": list(AutoAssign.Mode.values)})
    if mode == AutoAssign.Mode.MEMBER:
        if member_id is None:
            raise DomainError(InboxError.INVALID_AUTO_ASSIGN, "Choose the member who gets new conversations.",
                              {"member_id": ["Required with mode member."]})
        member = member_of(tenant, member_id)
        if not allows(member.role, Perm.CONVERSATIONS_REPLY):
            raise DomainError(InboxError.ASSIGNEE_CANNOT_REPLY,
                              f"{member.user.email} reads conversations but cannot answer them; choose someone "
                              "who can.", {"member_id": member.pk, "role": member.role})
    else:
        member_id = None
    entitlements.require_write(tenant)
    with transaction.atomic():
        row = AutoAssign.objects.select_for_update().filter(scope=auto_assign_scope(session)).first()
        before = _auto_assign_snapshot(row) if row is not None else {}
        row = row or AutoAssign(session=session, scope=auto_assign_scope(session))
        row.mode, row.member_id, row.updated_at = mode, member_id, timezone.now()
        row.save()
        audit.record("whatsapp.auto_assign_updated", actor=acting_user, target=row, tenant=tenant, before=before,
                     after=_auto_assign_snapshot(row))
    return row


def reset_auto_assign(tenant, session, *, acting_user):
    """The number goes back to the workspace's auto-assignment."""
    entitlements.require_write(tenant)
    with transaction.atomic():
        row = AutoAssign.objects.select_for_update().filter(scope=auto_assign_scope(session)).first()
        if row is not None:
            audit.record("whatsapp.auto_assign_reset", actor=acting_user, target=row, tenant=tenant,
                         before=_auto_assign_snapshot(row))
            row.delete()


def auto_assign_new(schema_name, session_id, conversation_id):
    """A contact's first message made this conversation: give it to whoever the number's (or the workspace's)
    auto-assignment names. Registered with whatsapp.conversations (WhatsappConfig.ready) and called on the session
    host once the message is stored; never raises into it. Returns the conversation when it was assigned."""
    try:
        with schema_context(schema_name):
            setting = effective_auto_assign(session_id)
            if setting.mode == AutoAssign.Mode.OFF:
                return None
            conversation = Conversation.objects.filter(pk=conversation_id).first()
            if conversation is None or conversation.assignee_id is not None:
                return None
            tenant = Tenant.objects.get(schema_name=schema_name)
            if setting.mode == AutoAssign.Mode.ROUND_ROBIN:
                return assign_round_robin(tenant, conversation, acting_user=None, how="auto_round_robin")
            member = Membership.objects.filter(pk=setting.member_id, tenant=tenant).select_related("user").first()
            if member is None or not allows(member.role, Perm.CONVERSATIONS_REPLY):
                log.warning("auto-assignment of %s in %s skipped: member %s is gone or cannot answer",
                            conversation_id, schema_name, setting.member_id)
                return None
            with transaction.atomic():
                return _assign_locked(tenant, _locked(conversation), member, acting_user=None, how="auto_member")
    except DomainError as exc:  # nobody answers conversations (round robin): it stays unassigned
        log.info("auto-assignment of %s in %s skipped: %s", conversation_id, schema_name, exc.message)
    except Exception:
        log.exception("auto-assignment of %s in %s failed", conversation_id, schema_name)
    return None


def _assign_locked(tenant, row, member, *, acting_user, how):
    before = {"assignee_id": row.assignee_id}
    row.assignee_id = member.pk if member is not None else None
    row.assigned_at = timezone.now() if member is not None else None
    row.save(update_fields=["assignee_id", "assigned_at"])
    audit.record("whatsapp.conversation_assigned" if member is not None else "whatsapp.conversation_unassigned",
                 actor=acting_user, target=row, tenant=tenant, before=before,
                 after={"assignee_id": row.assignee_id, "how": how})
    _announce_on_commit(row)
    return row


def set_status(tenant, conversation, status, *, acting_user):
    """Open, pending (waiting on someone) or closed. A new message from the contact opens it again."""
    if status not in Conversation.Status.values:
        raise DomainError(CommonError.VALIDATION_ERROR, f"status is one of {', '.join(Conversation.Status.values)}.",
                          {"status": list(Conversation.Status.values)})
    with transaction.atomic():
        row = _locked(conversation)
        if row.status == status:
            return row
        before = {"status": row.status}
        row.status = status
        row.save(update_fields=["status"])
        audit.record("whatsapp.conversation_status_changed", actor=acting_user, target=row, tenant=tenant,
                     before=before, after={"status": status})
        _announce_on_commit(row)
        return row


def _announce_on_commit(row):
    schema, summary = connection.schema_name, conversation_summary(row)
    transaction.on_commit(lambda: _announce(schema, row.pk, summary))


def _announce(schema, conversation_id, summary):
    """The list page and the conversation's page show the new status and assignee without a reload."""
    message = {"type": "conversation.update", "data": summary}
    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)(conversations_group(schema), message)
        async_to_sync(layer.group_send)(conversation_group(schema, conversation_id), message)
    except Exception:  # the pages show it on their next load anyway
        log.warning("inbox announcement for conversation %s failed", conversation_id, exc_info=True)


# --- canned replies ----------------------------------------------------------------------------------------------

def _code(raw):
    """"/Price" → "price"; 400 validation_error unless letters, digits, - and _ (1 to 32, after an optional /)."""
    raw = str(raw or "")
    if not re.fullmatch(CODE_PATTERN, raw):
        raise DomainError(CommonError.VALIDATION_ERROR, "code: 1 to 32 letters, digits, - or _ (e.g. price).",
                          {"code": ["1 to 32 letters, digits, - or _."]})
    return raw.lstrip("/").lower()


def _canned_text(text):
    text = str(text or "")
    if not has_visible_text(text) or len(text) > MAX_CANNED_TEXT:
        raise DomainError(CommonError.VALIDATION_ERROR, f"text: 1 to {MAX_CANNED_TEXT} characters.",
                          {"text": [f"1 to {MAX_CANNED_TEXT} characters."]})
    return text


def _snapshot(reply):
    return {"code": reply.code, "text": reply.text}


def _save_canned(reply, fields):
    """Save, answering 409 canned_code_taken when another reply has the code."""
    try:
        with transaction.atomic():
            reply.save(update_fields=fields) if fields else reply.save()
    except IntegrityError as exc:
        raise DomainError(InboxError.CANNED_CODE_TAKEN, f"/{reply.code} is taken; pick another code.",
                          {"code": reply.code}) from exc


def create_canned_reply(tenant, *, code, text, acting_user):
    """A new canned reply. 409 canned_code_taken, 400 too_many_canned_replies (MAX_CANNED_REPLIES)."""
    author = acting_user if getattr(acting_user, "pk", None) else None
    reply = CannedReply(code=_code(code), text=_canned_text(text), created_by=author)
    with transaction.atomic():
        if CannedReply.objects.count() >= MAX_CANNED_REPLIES:
            raise DomainError(InboxError.TOO_MANY_CANNED_REPLIES,
                              f"A workspace has at most {MAX_CANNED_REPLIES} canned replies; delete some first.")
        _save_canned(reply, None)
        audit.record("whatsapp.canned_reply_created", actor=acting_user, target=reply, tenant=tenant,
                     after=_snapshot(reply))
    return reply


def update_canned_reply(tenant, reply, *, acting_user, code=None, text=None):
    before = _snapshot(reply)
    if code is not None:
        reply.code = _code(code)
    if text is not None:
        reply.text = _canned_text(text)
    if _snapshot(reply) == before:
        return reply
    reply.updated_at = timezone.now()
    with transaction.atomic():
        _save_canned(reply, ["code", "text", "updated_at"])
        audit.record("whatsapp.canned_reply_updated", actor=acting_user, target=reply, tenant=tenant,
                     before=before, after=_snapshot(reply))
    return reply


def delete_canned_reply(tenant, reply, *, acting_user):
    with transaction.atomic():
        audit.record("whatsapp.canned_reply_deleted", actor=acting_user, target=reply, tenant=tenant,
                     before=_snapshot(reply))
        reply.delete()


def expand_canned(text):
    """The canned reply's text when `text` is exactly "/code" of one (the composer's shortcut without script);
    otherwise `text` unchanged."""
    stripped = str(text or "").strip()
    if stripped.startswith("/") and 1 < len(stripped) <= 33:
        reply = CannedReply.objects.filter(code=stripped[1:].lower()).first()
        if reply is not None:
            return reply.text
    return text


# --- internal notes ------------------------------------------------------------------------------------------------

def add_note(tenant, conversation, text, *, acting_user):
    """A note for the team on `conversation`; never sent to WhatsApp."""
    text = str(text or "")
    if not has_visible_text(text) or len(text) > MAX_NOTE_TEXT:
        raise DomainError(CommonError.VALIDATION_ERROR, f"text: 1 to {MAX_NOTE_TEXT} characters.",
                          {"text": [f"1 to {MAX_NOTE_TEXT} characters."]})
    with transaction.atomic():
        note = ConversationNote.objects.create(conversation=conversation, text=text,
                                               author=acting_user if getattr(acting_user, "pk", None) else None)
        audit.record("whatsapp.conversation_note_added", actor=acting_user, target=note, tenant=tenant,
                     after={"conversation_id": conversation.pk, "text": text[:200]})
    return note


def delete_note(tenant, note, *, acting_user, membership):
    """Its author deletes a note, or an owner or admin does (403 not_your_note for anyone else)."""
    mine = note.author_id is not None and note.author_id == getattr(acting_user, "pk", None)
    if not mine and not (membership is not None and can_manage(membership.role)):
        raise DomainError(InboxError.NOT_YOUR_NOTE, "Only its author, an owner or an admin deletes a note.")
    with transaction.atomic():
        audit.record("whatsapp.conversation_note_deleted", actor=acting_user, target=note, tenant=tenant,
                     before={"conversation_id": note.conversation_id, "author_id": note.author_id,
                             "text": note.text[:200]})
        note.delete()


# --- typing ---------------------------------------------------------------------------------------------------------

def contact_typing(event):
    """The session host's CHAT_PRESENCE applier (WhatsappConfig.ready): a contact types or stops; the open pages
    of that conversation show "typing…" (nothing is stored). Only sessions with show_contact_typing hear it: the
    provider marks only those online. Never raises into the host."""
    data = event.data or {}
    state = data.get("state")
    if state not in CHAT_PRESENCE_STATES or not data.get("chat"):
        return None
    schema_name, session_id = event.session_key.split(":", 1)
    try:
        with schema_context(schema_name):
            conversation_id = (Conversation.objects.filter(session_id=int(session_id), chat_jid=str(data["chat"])[:100],
                                                           session__show_contact_typing=True)
                               .values_list("pk", flat=True).first())
        if conversation_id is None:
            return None
        async_to_sync(get_channel_layer().group_send)(
            conversation_group(schema_name, conversation_id),
            {"type": "conversation.typing", "data": {"conversation_id": conversation_id, "state": state}})
    except Exception:  # a page that misses "typing…" is no harm; the host's events must go on
        log.warning("contact typing in %s not shown", event.session_key, exc_info=True)
    return None


def send_typing(conversation, state):
    """Show the contact "typing…" while a member writes (state "composing"), or stop ("paused"): the session host
    sends the chat presence through the provider. Nothing is stored or audited; WhatsApp stops showing it by itself
    after a while. 409 session_not_connected; 409 session_not_running when no host runs the session."""
    if state not in CHAT_PRESENCE_STATES:
        raise DomainError(CommonError.VALIDATION_ERROR, f"state is one of {', '.join(CHAT_PRESENCE_STATES)}.",
                          {"state": list(CHAT_PRESENCE_STATES)})
    session = conversation.session
    if session.status != WhatsAppSession.Status.CONNECTED:
        raise DomainError(InboxError.SESSION_NOT_CONNECTED, f"{session} is not connected; nothing reaches the contact.",
                          {"status": session.status})
    commands.send(connection.schema_name, session.pk, "chat_presence", to=conversation.chat_jid, state=state)
