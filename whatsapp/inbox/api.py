"""The shared inbox over the API (included under /api/v1/ by config/urls.py):

GET conversations (filters: assigned=mine|unassigned|all, status=open|pending|closed, session), GET
conversations/counts (the tabs' figures, unread included), GET/PATCH conversations/{id} (status),
POST conversations/{id}/assign (a member by id, nobody, or the next agent by round robin) and
GET conversations/{id}/messages; GET/POST canned-replies, GET/PATCH/DELETE canned-replies/{id}; GET/POST
conversations/{id}/notes, DELETE conversations/{id}/notes/{note_id}; POST conversations/{id}/typing;
GET/PUT inbox/auto-assign (who gets new conversations), GET/PUT/DELETE sessions/{name}/auto-assign (a number's own;
DELETE: back to the workspace's).

Any member reads; assigning, changing a status and writing notes is conversations.reply (owners, admins, agents: a
viewer gets 403 permission_denied); canned replies are canned_replies.manage (owners, admins); a note is deleted by
its author, an owner or an admin (403 not_your_note); auto-assignment is read with settings.read and changed with
settings.manage (owners, admins). Ids are the tenant's own: another tenant's conversation,
member, canned reply or note is 404. Changes need a paying tenant (402 while read-only) and are audited
(whatsapp.inbox.actions).
"""
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, VISIBLE_CHAR, StrictSerializer, field_with_schema, paginated
from core.errors import CommonError, DomainError
from core.permissions import Perm
from tenants.permissions import HasActiveTenant
from whatsapp.conversations.api import ID_PARAMETER, SESSION_FILTER, ConversationSerializer, DirectoryView
from whatsapp.conversations.models import Conversation
from whatsapp.live import conversation_summary
from whatsapp.messaging.api import MessageSerializer
from whatsapp.messaging.models import Message
from whatsapp.messaging.payloads import message_payload
from whatsapp.sessions import selectors as session_selectors

from . import actions, selectors
from .models import AutoAssign, CannedReply, ConversationNote

TAGS = ["conversations"]
ASSIGNED_PARAMETER = OpenApiParameter(
    "assigned", str, enum=list(selectors.ASSIGNED_FILTERS),
    description="mine: assigned to the caller; unassigned: to nobody (or to a member who has left); all (default)")
STATUS_PARAMETER = OpenApiParameter("status", str, enum=list(selectors.STATUSES),
                                    description="Only conversations with this status (default: any)")


class ConversationPatchSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=Conversation.Status.choices, required=False,
                                     help_text="open, pending (waiting on someone) or closed")


class AssignSerializer(StrictSerializer):
    member_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2_147_483_647,
        help_text="The member (GET /members) who answers it; null takes it from whoever has it; left out: the next "
                  "agent by round robin")


_FIGURES = inline_serializer("InboxFigures", {
    "conversations": serializers.IntegerField(),
    "unread_conversations": serializers.IntegerField(help_text="Conversations with messages nobody has read"),
    "unread_messages": serializers.IntegerField(),
})
CountsSerializer = inline_serializer("InboxCounts", {
    "status": serializers.ChoiceField(choices=Conversation.Status.choices, allow_null=True),
    "mine": _FIGURES, "unassigned": _FIGURES, "all": _FIGURES,
})


def _conversation(pk):
    conversation = Conversation.objects.select_related("session", "contact", "group").filter(pk=pk).first()
    if conversation is None:
        raise exceptions.NotFound("No such conversation.")
    return conversation


def _valid(serializer_class, request):
    serializer = serializer_class(data=request.data)
    if not serializer.is_valid():
        raise DomainError(CommonError.VALIDATION_ERROR, "Invalid request.", serializer.errors)
    return dict(serializer.validated_data)


class ConversationListView(DirectoryView):
    @extend_schema(tags=TAGS, parameters=[SESSION_FILTER, ASSIGNED_PARAMETER, STATUS_PARAMETER, *PAGE_PARAMETERS],
                   responses=serializers.ListSerializer(child=ConversationSerializer))
    def get(self, request):
        """The tenant's conversations, latest activity first, with the contact or group, the last message's
        preview, how many inbound messages nobody has looked at yet, the status and the assignee."""
        rows = Conversation.objects.select_related("session", "contact", "group")
        session = session_selectors.from_filter(request)
        if session is not None:
            rows = rows.filter(session=session)
        rows = selectors.filtered(rows, assigned=request.query_params.get("assigned"),
                                  status=request.query_params.get("status"),
                                  membership=getattr(request._request, "membership", None),
                                  tenant=request._request.tenant)
        return paginated(request, self, selectors.ordered(rows), conversation_summary)


class ConversationCountsView(DirectoryView):
    @extend_schema(tags=TAGS, parameters=[STATUS_PARAMETER], responses=CountsSerializer)
    def get(self, request):
        """How many conversations each tab of the inbox holds (mine, unassigned, all), and how many of them have
        unread messages."""
        status = request.query_params.get("status")
        figures = selectors.counts(tenant=request._request.tenant,
                                   membership=getattr(request._request, "membership", None), status=status)
        return Response({"status": status, **figures})


class ConversationDetailView(DirectoryView):
    required_permissions = {"GET": Perm.CONVERSATIONS_READ, "PATCH": Perm.CONVERSATIONS_REPLY}
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], responses=ConversationSerializer)
    def get(self, request, pk):
        return Response(conversation_summary(_conversation(pk)))

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], request=ConversationPatchSerializer,
                   responses=ConversationSerializer)
    def patch(self, request, pk):
        """Change the conversation's status (owner, admin or agent); fields left out keep their value."""
        conversation = _conversation(pk)
        data = _valid(ConversationPatchSerializer, request)
        if "status" in data:
            conversation = actions.set_status(request._request.tenant, conversation, data["status"],
                                              acting_user=request.user)
        return Response(conversation_summary(conversation))


class ConversationAssignView(DirectoryView):
    required_permission = Perm.CONVERSATIONS_REPLY
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], request=AssignSerializer, responses=ConversationSerializer)
    def post(self, request, pk):
        """Give the conversation to a member (`member_id`), to nobody (`null`), or, with `member_id` left out, to
        the next agent by round robin (the online agents in turn, all agents when none is online; everyone who answers
        when the workspace has no agent).
        404 for a member id that is not this workspace's; 400 assignee_cannot_reply for a viewer; 409 no_agents."""
        conversation = _conversation(pk)
        data = _valid(AssignSerializer, request)
        tenant = request._request.tenant
        if "member_id" not in data:
            conversation = actions.assign_round_robin(tenant, conversation, acting_user=request.user)
        else:
            member = actions.member_of(tenant, data["member_id"]) if data["member_id"] is not None else None
            conversation = actions.assign(tenant, conversation, member, acting_user=request.user)
        return Response(conversation_summary(conversation))


class TypingSerializer(StrictSerializer):
    state = serializers.ChoiceField(choices=["composing", "paused"],
                                    help_text='"composing": the contact sees typing…; "paused": no longer')


TypingAcceptedSerializer = inline_serializer("TypingAccepted", {
    "conversation_id": serializers.IntegerField(), "state": serializers.CharField(),
})


class ConversationTypingView(DirectoryView):
    required_permission = Perm.CONVERSATIONS_REPLY
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], request=TypingSerializer,
                   responses={202: TypingAcceptedSerializer})
    def post(self, request, pk):
        """Show the contact that someone is typing (composing) or has stopped (paused), through the number's
        WhatsApp chat presence; WhatsApp stops showing it by itself after about 25 s without a new composing.
        409 session_not_connected, session_not_running."""
        conversation = _conversation(pk)
        data = _valid(TypingSerializer, request)
        actions.send_typing(conversation, data["state"])
        return Response({"conversation_id": conversation.pk, "state": data["state"]}, status=202)


class ConversationMessagesView(DirectoryView):
    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER, *PAGE_PARAMETERS],
                   responses=serializers.ListSerializer(child=MessageSerializer))
    def get(self, request, pk):
        """One conversation's messages, newest first."""
        conversation = _conversation(pk)
        rows = Message.objects.select_related("session", "automation").filter(conversation=conversation).order_by(
            "-created_at", "-id")
        return paginated(request, self, rows, message_payload)


CannedReplySerializer = inline_serializer("CannedReply", {
    "id": serializers.IntegerField(), "code": serializers.CharField(help_text="Typed after a / in the composer"),
    "text": serializers.CharField(), "created_at": serializers.DateTimeField(),
    "updated_at": serializers.DateTimeField(),
})
NoteSerializer = inline_serializer("ConversationNote", {
    "id": serializers.IntegerField(), "conversation_id": serializers.IntegerField(), "text": serializers.CharField(),
    "author": inline_serializer("NoteAuthor", {"id": serializers.IntegerField(), "email": serializers.EmailField(),
                                               "full_name": serializers.CharField()}, allow_null=True),
    "created_at": serializers.DateTimeField(),
})


class CannedReplyWriteSerializer(StrictSerializer):
    code = field_with_schema(serializers.CharField, {"type": "string", "pattern": actions.CODE_PATTERN},
                             max_length=33, trim_whitespace=False,
                             help_text='"price" (or "/price"): letters, digits, - and _; kept in lower case')
    text = field_with_schema(serializers.CharField, {"type": "string", "minLength": 1,
                                                     "maxLength": actions.MAX_CANNED_TEXT, "pattern": VISIBLE_CHAR},
                             trim_whitespace=False)


class CannedReplyPatchSerializer(CannedReplyWriteSerializer):
    """Fields left out keep their value."""

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            field.required = False
        return fields


class NoteWriteSerializer(StrictSerializer):
    text = field_with_schema(serializers.CharField, {"type": "string", "minLength": 1,
                                                     "maxLength": actions.MAX_NOTE_TEXT, "pattern": VISIBLE_CHAR},
                             trim_whitespace=False, help_text="For the team only; never sent to WhatsApp")


class CannedReplyListView(DirectoryView):
    required_permissions = {"GET": Perm.CONVERSATIONS_READ, "POST": Perm.CANNED_REPLIES_MANAGE}
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, parameters=PAGE_PARAMETERS,
                   responses=serializers.ListSerializer(child=CannedReplySerializer))
    def get(self, request):
        """The workspace's canned replies, by code."""
        return paginated(request, self, CannedReply.objects.order_by("code"), selectors.canned_payload)

    @extend_schema(tags=TAGS, request=CannedReplyWriteSerializer, responses={201: CannedReplySerializer})
    def post(self, request):
        """Save a canned reply (owner or admin). 409 canned_code_taken; 400 too_many_canned_replies."""
        data = _valid(CannedReplyWriteSerializer, request)
        reply = actions.create_canned_reply(request._request.tenant, code=data["code"], text=data["text"],
                                            acting_user=request.user)
        return Response(selectors.canned_payload(reply), status=201)


class CannedReplyDetailView(DirectoryView):
    required_permissions = {"GET": Perm.CONVERSATIONS_READ, "PATCH": Perm.CANNED_REPLIES_MANAGE,
                            "DELETE": Perm.CANNED_REPLIES_MANAGE}
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @staticmethod
    def _reply(pk):
        reply = CannedReply.objects.filter(pk=pk).first()
        if reply is None:
            raise exceptions.NotFound("No such canned reply.")
        return reply

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], responses=CannedReplySerializer)
    def get(self, request, pk):
        return Response(selectors.canned_payload(self._reply(pk)))

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], request=CannedReplyPatchSerializer,
                   responses=CannedReplySerializer)
    def patch(self, request, pk):
        """Change a canned reply's code or text (owner or admin); fields left out keep their value."""
        reply = self._reply(pk)
        data = _valid(CannedReplyPatchSerializer, request)
        reply = actions.update_canned_reply(request._request.tenant, reply, acting_user=request.user,
                                            code=data.get("code"), text=data.get("text"))
        return Response(selectors.canned_payload(reply))

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], responses={204: None})
    def delete(self, request, pk):
        actions.delete_canned_reply(request._request.tenant, self._reply(pk), acting_user=request.user)
        return Response(status=204)


class NoteListView(DirectoryView):
    required_permissions = {"GET": Perm.CONVERSATIONS_READ, "POST": Perm.CONVERSATIONS_REPLY}
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER, *PAGE_PARAMETERS],
                   responses=serializers.ListSerializer(child=NoteSerializer))
    def get(self, request, pk):
        """The conversation's internal notes, oldest first (members only; never sent to WhatsApp)."""
        return paginated(request, self, selectors.notes_of(_conversation(pk)), selectors.note_payload)

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER], request=NoteWriteSerializer, responses={201: NoteSerializer})
    def post(self, request, pk):
        """Leave a note for the team on the conversation (owner, admin or agent). Nothing goes to the contact."""
        conversation = _conversation(pk)
        data = _valid(NoteWriteSerializer, request)
        note = actions.add_note(request._request.tenant, conversation, data["text"], acting_user=request.user)
        return Response(selectors.note_payload(note), status=201)


class NoteDetailView(DirectoryView):
    required_permission = Perm.CONVERSATIONS_REPLY
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, parameters=[ID_PARAMETER, OpenApiParameter("note_id", int, OpenApiParameter.PATH)],
                   responses={204: None})
    def delete(self, request, pk, note_id):
        """Delete a note: its author, an owner or an admin (403 not_your_note otherwise)."""
        note = ConversationNote.objects.filter(pk=note_id, conversation_id=pk).first()
        if note is None:
            raise exceptions.NotFound("No such note.")
        actions.delete_note(request._request.tenant, note, acting_user=request.user,
                            membership=getattr(request._request, "membership", None))
        return Response(status=204)


class AutoAssignWriteSerializer(StrictSerializer):
    mode = serializers.ChoiceField(choices=AutoAssign.Mode.choices,
                                   help_text="off; round_robin: the next agent, online ones first; member: member_id")
    member_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2_147_483_647,
                                         help_text="The member (GET /members) who gets them, with mode member")


AutoAssignSerializer = inline_serializer("AutoAssign", {
    "scope": serializers.ChoiceField(choices=["workspace", "session"]),
    "session": serializers.CharField(allow_null=True),
    "own": serializers.BooleanField(help_text="false: a number using the workspace's setting"),
    "mode": serializers.ChoiceField(choices=AutoAssign.Mode.choices),
    "member_id": serializers.IntegerField(allow_null=True),
    "updated_at": serializers.DateTimeField(allow_null=True),
})
SESSION_NAME = [OpenApiParameter("name", str, OpenApiParameter.PATH)]


def auto_assign_payload(row, *, session=None):
    return {"scope": "session" if session is not None else "workspace",
            "session": session.name if session is not None else None,
            "own": row.pk is not None and row.scope == actions.auto_assign_scope(session),
            "mode": row.mode, "member_id": row.member_id,
            "updated_at": row.updated_at.isoformat() if row.pk else None}


def _auto_assign_body(request):
    serializer = AutoAssignWriteSerializer(data=request.data)
    if not serializer.is_valid():
        raise DomainError(CommonError.VALIDATION_ERROR, "Invalid request.", serializer.errors)
    return serializer.validated_data


class WorkspaceAutoAssignView(DirectoryView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "PUT": Perm.SETTINGS_MANAGE}
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, responses=AutoAssignSerializer)
    def get(self, request):
        """Who gets the workspace's new conversations (a contact's first message makes one)."""
        return Response(auto_assign_payload(actions.auto_assign_row(None)))

    @extend_schema(tags=TAGS, request=AutoAssignWriteSerializer, responses=AutoAssignSerializer)
    def put(self, request):
        """Set it (owner or admin): off, round robin among online agents, or a fixed member."""
        data = _auto_assign_body(request)
        row = actions.update_auto_assign(request._request.tenant, mode=data["mode"],
                                         member_id=data.get("member_id"), acting_user=request.user)
        return Response(auto_assign_payload(row))


class SessionAutoAssignView(DirectoryView):
    required_permissions = {"GET": Perm.SETTINGS_READ, "PUT": Perm.SETTINGS_MANAGE, "DELETE": Perm.SETTINGS_MANAGE}
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=TAGS, parameters=SESSION_NAME, responses=AutoAssignSerializer)
    def get(self, request, name):
        """Who gets this number's new conversations: its own setting, or the workspace's it uses (own: false)."""
        session = session_selectors.named(name)
        own = actions.auto_assign_row(session)
        row = own if own.pk is not None else actions.auto_assign_row(None)
        return Response(auto_assign_payload(row, session=session))

    @extend_schema(tags=TAGS, parameters=SESSION_NAME, request=AutoAssignWriteSerializer,
                   responses=AutoAssignSerializer)
    def put(self, request, name):
        """Give the number a setting of its own (owner or admin)."""
        session = session_selectors.named(name)
        data = _auto_assign_body(request)
        row = actions.update_auto_assign(request._request.tenant, session=session, mode=data["mode"],
                                         member_id=data.get("member_id"), acting_user=request.user)
        return Response(auto_assign_payload(row, session=session))

    @extend_schema(tags=TAGS, parameters=SESSION_NAME, responses={204: None})
    def delete(self, request, name):
        """The number goes back to the workspace's setting."""
        actions.reset_auto_assign(request._request.tenant, session_selectors.named(name), acting_user=request.user)
        return Response(status=204)


urlpatterns = [
    path("inbox/auto-assign", WorkspaceAutoAssignView.as_view(), name="api_auto_assign"),
    path("sessions/<str:name>/auto-assign", SessionAutoAssignView.as_view(), name="api_session_auto_assign"),
    path("conversations", ConversationListView.as_view(), name="api_conversations"),
    path("conversations/counts", ConversationCountsView.as_view(), name="api_conversation_counts"),
    path("conversations/<int:pk>", ConversationDetailView.as_view(), name="api_conversation"),
    path("conversations/<int:pk>/assign", ConversationAssignView.as_view(), name="api_conversation_assign"),
    path("conversations/<int:pk>/messages", ConversationMessagesView.as_view(), name="api_conversation_messages"),
    path("conversations/<int:pk>/typing", ConversationTypingView.as_view(), name="api_conversation_typing"),
    path("conversations/<int:pk>/notes", NoteListView.as_view(), name="api_conversation_notes"),
    path("conversations/<int:pk>/notes/<int:note_id>", NoteDetailView.as_view(), name="api_conversation_note"),
    path("canned-replies", CannedReplyListView.as_view(), name="api_canned_replies"),
    path("canned-replies/<int:pk>", CannedReplyDetailView.as_view(), name="api_canned_reply"),
]
