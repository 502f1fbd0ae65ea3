"""Contacts, groups and conversations over the API (included under /api/v1/ by config/urls.py):

GET contacts, POST contacts/sync, DELETE contacts/{id}, GET groups, GET groups/{id} (the conversations
themselves, the shared inbox: whatsapp.inbox.api).

The request runs in the caller's tenant schema, so another tenant's ids and session names are 404 like unknown
ones. Any member reads and asks for a sync; deleting a contact is for owners and admins. A sync needs a paying
tenant (402 payment_required while read-only); deleting stays possible, as taking things away does elsewhere.
"""
from django.db.models import F, Q
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.permissions import CanWrite
from core.api import PAGE_PARAMETERS, paginated
from core.errors import CommonError, DomainError
from core.permissions import Perm
from tenants.permissions import HasActiveTenant
from whatsapp.live import conversation_summary
from whatsapp.sessions import selectors as session_selectors
from whatsapp.sessions.actions import NAME_PATTERN

from . import actions as conversations
from . import erasure
from .errors import ConversationError
from .models import Contact, Conversation, Group

SEARCH_MAX = 100


def _iso(value):
    return value.isoformat() if value else None


def contact_payload(contact, session_name=None):
    return {
        "id": contact.pk,
        "session": session_name or contact.session.name,
        "jid": contact.jid,
        "phone": contact.phone or None,
        "lid": contact.lid or None,
        "name": contact.name,
        "push_name": contact.push_name,
        "display_name": str(contact),
        "phone_hidden": not contact.phone,
        "source": contact.source,
        "created_at": _iso(contact.created_at),
        "updated_at": _iso(contact.updated_at),
    }


def group_payload(group, *, with_participants=False):
    data = {
        "id": group.pk,
        "session": group.session.name,
        "jid": group.jid,
        "name": group.name,
        "topic": group.topic,
        "participant_count": len(group.participants or []),
        "synced_at": _iso(group.synced_at),
        "created_at": _iso(group.created_at),
    }
    if with_participants:
        data["participants"] = group.participants or []
    return data


CONTACT_FIELDS = {
    "id": serializers.IntegerField(), "session": serializers.CharField(), "jid": serializers.CharField(),
    "phone": serializers.CharField(allow_null=True, help_text="E.164; null while WhatsApp hides the number"),
    "lid": serializers.CharField(allow_null=True, help_text="WhatsApp's hidden identity (…@lid), when known"),
    "name": serializers.CharField(), "push_name": serializers.CharField(), "display_name": serializers.CharField(),
    "phone_hidden": serializers.BooleanField(),
    "source": serializers.ChoiceField(choices=Contact.Source.values),
    "created_at": serializers.DateTimeField(), "updated_at": serializers.DateTimeField(),
}
ContactSerializer = inline_serializer("Contact", CONTACT_FIELDS)
ParticipantsSerializer = inline_serializer("GroupParticipant", {
    "jid": serializers.CharField(), "phone": serializers.CharField(allow_null=True),
    "is_admin": serializers.BooleanField(),
}, many=True)
_GROUP_FIELDS = {
    "id": serializers.IntegerField(), "session": serializers.CharField(), "jid": serializers.CharField(),
    "name": serializers.CharField(), "topic": serializers.CharField(), "participant_count": serializers.IntegerField(),
    "synced_at": serializers.DateTimeField(allow_null=True), "created_at": serializers.DateTimeField(),
}
GroupSerializer = inline_serializer("Group", _GROUP_FIELDS)
GroupDetailSerializer = inline_serializer("GroupDetail", {**_GROUP_FIELDS,
                                                          "participants": ParticipantsSerializer})
CONVERSATION_FIELDS = {
    "id": serializers.IntegerField(), "session": serializers.CharField(), "session_id": serializers.IntegerField(),
    "chat": serializers.CharField(), "kind": serializers.ChoiceField(choices=["contact", "group"]),
    "title": serializers.CharField(),
    "contact": inline_serializer("ConversationContact", {
        "id": serializers.IntegerField(), "jid": serializers.CharField(),
        "phone": serializers.CharField(allow_null=True), "name": serializers.CharField(),
        "push_name": serializers.CharField(), "display_name": serializers.CharField(),
        "phone_hidden": serializers.BooleanField()}, allow_null=True),
    "group": inline_serializer("ConversationGroup", {
        "id": serializers.IntegerField(), "jid": serializers.CharField(), "name": serializers.CharField(),
        "participants": serializers.IntegerField()}, allow_null=True),
    "last_message_at": serializers.DateTimeField(allow_null=True),
    "last_message_preview": serializers.CharField(), "unread_count": serializers.IntegerField(),
    "status": serializers.ChoiceField(choices=Conversation.Status.choices,
                                      help_text="open, pending or closed; a message from the contact opens it"),
    "assignee_id": serializers.IntegerField(allow_null=True, help_text="The member answering it (GET /members)"),
    "assigned_at": serializers.DateTimeField(allow_null=True),
}
ConversationSerializer = inline_serializer("Conversation", CONVERSATION_FIELDS)
SyncRequestSerializer = inline_serializer("ContactSyncRequest", {
    "session": serializers.CharField(max_length=64, help_text="The session's name; it must be connected."),
})
SyncAcceptedSerializer = inline_serializer("ContactSyncAccepted", {
    "status": serializers.CharField(help_text='"syncing"'), "session": serializers.CharField(),
})

SESSION_FILTER = OpenApiParameter("session", {"type": "string", "pattern": NAME_PATTERN},
                                  description="Only this session's (its name).")
ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH)


def _by_session(queryset, request):
    session = session_selectors.from_filter(request)
    return queryset.filter(session=session) if session is not None else queryset


class DirectoryView(APIView):
    required_permission = Perm.CONVERSATIONS_READ
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]


class ContactListView(DirectoryView):
    @extend_schema(tags=["contacts"], parameters=[
        SESSION_FILTER,
        OpenApiParameter("search", {"type": "string", "maxLength": SEARCH_MAX},
                         description="Part of the name, WhatsApp name or phone number."),
        *PAGE_PARAMETERS,
    ], responses=serializers.ListSerializer(child=ContactSerializer))
    def get(self, request):
        """The tenant's contacts (from inbound and outgoing messages and from syncs), by name."""
        contacts = _by_session(Contact.objects.select_related("session"), request)
        search = (request.query_params.get("search") or "").strip()
        if len(search) > SEARCH_MAX:
            raise DomainError(ConversationError.INVALID_SEARCH, f"search holds at most {SEARCH_MAX} characters.")
        if search:
            match = Q(name__icontains=search) | Q(push_name__icontains=search) | Q(jid__icontains=search)
            digits = "".join(ch for ch in search if ch.isdigit())
            if digits:
                match |= Q(phone__contains=digits)
            contacts = contacts.filter(match)
        return paginated(request, self, contacts, contact_payload)


class ContactSyncView(DirectoryView):
    required_permission = Perm.CONTACTS_MANAGE
    permission_classes = [*DirectoryView.permission_classes, CanWrite]

    @extend_schema(tags=["contacts"], request=SyncRequestSerializer, responses={202: SyncAcceptedSerializer})
    def post(self, request):
        """Read the linked phone's contacts and groups into the directory. Accepted at once (202); the session
        host does the reading and the pages follow live. 404 unknown session; 409 session_not_connected
        (details.status); 409 session_not_running when no host runs it."""
        name = request.data.get("session") if isinstance(request.data, dict) else None
        if not name or not isinstance(name, str):
            raise DomainError(CommonError.VALIDATION_ERROR, "session: This field is required.",
                              {"session": ["This field is required."]})
        session = session_selectors.named(name)
        conversations.request_sync(session)
        return Response({"status": "syncing", "session": session.name}, status=status.HTTP_202_ACCEPTED)


class ContactDetailView(DirectoryView):
    required_permissions = {"GET": Perm.CONVERSATIONS_READ, "DELETE": Perm.CONTACTS_MANAGE}

    @extend_schema(tags=["contacts"], parameters=[ID_PARAMETER], responses=ContactSerializer)
    def get(self, request, pk):
        return Response(contact_payload(self._contact(pk)))

    @extend_schema(tags=["contacts"], parameters=[ID_PARAMETER, OpenApiParameter(
        "erase", bool, required=False, description=(
            "true: erase the contact for the GDPR (right to erasure): its messages with their text and media files, "
            "its conversations with their notes and hand-offs, the stored webhook deliveries and automation log "
            "of its chats go too, irreversibly. The audit row (whatsapp.contact_erased) holds counts only. "
            "Analytics' hourly numbers follow the deleted messages; the per-chat rows of its chats are deleted. "
            "false or missing: only the contact goes."))],
        responses={204: None, 400: OpenApiResponse(description="validation_error: erase is not true or false"),
                   404: OpenApiResponse(description="not_found: no such contact in this workspace")})
    def delete(self, request, pk):
        """Delete a contact (owner, admin or agent). Without `erase` its messages and conversations stay (records of
        what happened) and a new message from or to the number creates it again; with `erase=true` they go too."""
        erase = request.query_params.get("erase", "false").lower()
        if erase not in ("true", "false", "1", "0"):
            raise DomainError(CommonError.VALIDATION_ERROR, "erase: Must be true or false.",
                              {"erase": ["Must be true or false."]})
        contact = self._contact(pk)
        if erase in ("true", "1"):
            erasure.erase_contact(contact, acting_user=request.user, tenant=request._request.tenant)
        else:
            conversations.delete_contact(contact, acting_user=request.user, tenant=request._request.tenant)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def _contact(pk):
        contact = Contact.objects.select_related("session").filter(pk=pk).first()
        if contact is None:
            raise exceptions.NotFound("No such contact.")
        return contact


class GroupListView(DirectoryView):
    @extend_schema(tags=["groups"], parameters=[SESSION_FILTER, *PAGE_PARAMETERS],
                   responses=serializers.ListSerializer(child=GroupSerializer))
    def get(self, request):
        """The groups the sessions' phones are in (synced, or seen in a message), by name."""
        groups = _by_session(Group.objects.select_related("session"), request)
        return paginated(request, self, groups, group_payload)


class GroupDetailView(DirectoryView):
    @extend_schema(tags=["groups"], parameters=[ID_PARAMETER], responses=GroupDetailSerializer)
    def get(self, request, pk):
        """One group with its participants (as of the last sync)."""
        group = Group.objects.select_related("session").filter(pk=pk).first()
        if group is None:
            raise exceptions.NotFound("No such group.")
        return Response(group_payload(group, with_participants=True))


urlpatterns = [
    path("contacts", ContactListView.as_view(), name="api_contacts"),
    path("contacts/sync", ContactSyncView.as_view(), name="api_contacts_sync"),
    path("contacts/<int:pk>", ContactDetailView.as_view(), name="api_contact"),
    path("groups", GroupListView.as_view(), name="api_groups"),
    path("groups/<int:pk>", GroupDetailView.as_view(), name="api_group"),
]
