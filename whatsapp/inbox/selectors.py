"""Reading the shared inbox: the workspace's members who answer, conversations by filter (mine / unassigned /
all, and status), the unread counts the tabs show, canned replies and notes as the API and pages show them."""
from django.db.models import Count, F, Q, Sum

from accounts.models import Membership
from core.errors import DomainError
from core.permissions import Perm, allows, can_manage
from whatsapp.conversations.models import Conversation

from .errors import InboxError
from .models import ConversationNote

ASSIGNED_FILTERS = ("mine", "unassigned", "all")
STATUSES = tuple(Conversation.Status.values)


def members(tenant):
    """The workspace's members (user loaded), oldest first."""
    return list(Membership.objects.filter(tenant=tenant).select_related("user").order_by("id"))


def responders(tenant):
    """Members whose role answers conversations (conversations.reply), oldest first."""
    return [member for member in members(tenant) if allows(member.role, Perm.CONVERSATIONS_REPLY)]


def round_robin_pool(tenant, online=None):
    """Who round robin gives conversations to: the agents (members who answer conversations but do not manage the
    workspace), oldest membership first — those of them with an inbox page open (`online`: membership ids, from
    whatsapp.inbox.presence) when any is, else all of them; a workspace without agents gives them to everyone who
    answers (online ones first, the same way)."""
    answering = responders(tenant)
    agents = [member for member in answering if not can_manage(member.role)]
    pool = agents or answering
    if online:
        present = [member for member in pool if member.pk in online]
        if present:
            return present
    return pool


def member_names(tenant):
    """{membership id: the name pages show} of the workspace's members."""
    return {member.pk: member.user.full_name or member.user.email for member in members(tenant)}


def check_filters(assigned, status):
    if assigned is not None and assigned not in ASSIGNED_FILTERS:
        raise DomainError(InboxError.INVALID_FILTER, f"assigned is one of {', '.join(ASSIGNED_FILTERS)}.",
                          {"assigned": list(ASSIGNED_FILTERS)})
    if status is not None and status not in STATUSES:
        raise DomainError(InboxError.INVALID_FILTER, f"status is one of {', '.join(STATUSES)}.",
                          {"status": list(STATUSES)})


def _assigned(queryset, assigned, membership, member_ids):
    if assigned == "mine":
        return queryset.filter(assignee_id=membership.pk) if membership is not None else queryset.none()
    if assigned == "unassigned":  # nobody, or a member who has left the workspace since
        return queryset.filter(Q(assignee_id__isnull=True) | ~Q(assignee_id__in=member_ids))
    return queryset


def filtered(queryset, *, assigned, status, membership, tenant):
    """`queryset` of conversations narrowed to `assigned` (mine / unassigned / all; None: all) and `status`
    (None: any). 400 invalid_filter for anything else."""
    check_filters(assigned, status)
    if status is not None:
        queryset = queryset.filter(status=status)
    if assigned in ("mine", "unassigned"):
        member_ids = [member.pk for member in members(tenant)] if assigned == "unassigned" else []
        queryset = _assigned(queryset, assigned, membership, member_ids)
    return queryset


def ordered(queryset):
    return queryset.order_by(F("last_message_at").desc(nulls_last=True), "-id")


def counts(*, tenant, membership, status):
    """{"mine"|"unassigned"|"all": {"conversations", "unread_conversations", "unread_messages"}} for `status`
    (None: any): what the inbox's tabs show."""
    check_filters(None, status)
    member_ids = [member.pk for member in members(tenant)]
    rows = Conversation.objects.all()
    if status is not None:
        rows = rows.filter(status=status)
    mine = Q(assignee_id=membership.pk) if membership is not None else Q(pk__in=[])
    unassigned = Q(assignee_id__isnull=True) | ~Q(assignee_id__in=member_ids)
    unread = Q(unread_count__gt=0)
    figures = {}
    for name, where in (("mine", mine), ("unassigned", unassigned), ("all", Q())):
        figures[f"{name}_conversations"] = Count("id", filter=where)
        figures[f"{name}_unread_conversations"] = Count("id", filter=where & unread)
        figures[f"{name}_unread_messages"] = Sum("unread_count", filter=where, default=0)
    found = rows.aggregate(**figures)
    return {name: {"conversations": found[f"{name}_conversations"],
                   "unread_conversations": found[f"{name}_unread_conversations"],
                   "unread_messages": found[f"{name}_unread_messages"]} for name in ASSIGNED_FILTERS}


def _iso(value):
    return value.isoformat() if value else None


def canned_payload(reply):
    return {"id": reply.pk, "code": reply.code, "text": reply.text, "created_at": _iso(reply.created_at),
            "updated_at": _iso(reply.updated_at)}


def note_payload(note):
    author = note.author
    return {"id": note.pk, "conversation_id": note.conversation_id, "text": note.text,
            "author": {"id": author.pk, "email": author.email, "full_name": author.full_name} if author else None,
            "created_at": _iso(note.created_at)}


def notes_of(conversation):
    return ConversationNote.objects.filter(conversation=conversation).select_related("author")
