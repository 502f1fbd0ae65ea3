"""Changing the shared inbox: who answers a conversation (by hand, or the next agent by round robin) and its
status (open, pending, closed). One transaction each, with its audit row; open pages hear of it on commit.

Called by whatsapp.inbox.api and whatsapp.inbox.views, which check the caller's permission (conversations.reply)
first. A member id is the workspace's accounts.Membership id: another workspace's is not found (404), like an
unknown one.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Membership
from audit import actions as audit
from core.errors import CommonError, DomainError
from core.permissions import Perm, allows
from whatsapp.conversations.models import Conversation
from whatsapp.live import conversation_group, conversation_summary, conversations_group

from . import selectors
from .errors import InboxError
from .models import RoundRobin

log = logging.getLogger(__name__)


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


def assign_round_robin(tenant, conversation, *, acting_user):
    """Give `conversation` to the next member of the round robin (whatsapp.inbox.selectors.round_robin_pool: the
    agents in membership order, starting after the one who got the last conversation this way). 409 no_agents
    when nobody answers conversations."""
    pool = selectors.round_robin_pool(tenant)
    if not pool:
        raise DomainError(InboxError.NO_AGENTS, "Nobody in this workspace answers conversations; invite an agent.")
    with transaction.atomic():
        cursor, _ = RoundRobin.objects.select_for_update().get_or_create(pk=1)
        member = next((m for m in pool if cursor.last_member_id is not None and m.pk > cursor.last_member_id),
                      pool[0])
        cursor.last_member_id, cursor.updated_at = member.pk, timezone.now()
        cursor.save(update_fields=["last_member_id", "updated_at"])
        row = _locked(conversation)
        return _assign_locked(tenant, row, member, acting_user=acting_user, how="round_robin")


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
