"""Messages over the API: POST/GET /api/v1/messages, GET /api/v1/messages/{id}.

The request runs in the caller's tenant schema, so another tenant's message id is a 404 like an unknown one.
Sending needs a paying tenant (402 payment_required while read-only). Every type of whatsapp.messaging.types
goes through POST (JSON, or multipart with the media as `file`); GET /api/v1/messages/{id}/media serves a
message's stored media to its own tenant.
"""
import hashlib
import os

from django.apps import apps
from django.db.models import Q
from django.http import FileResponse
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.permissions import CanWrite
from core import crypto
from core.api import (
    ENCRYPTION_KEY_UNAVAILABLE,
    PAGE_PARAMETERS,
    CopiedFieldsSerializer,
    PageLimitPagination,
    StrictJSONParser,
    StrictMultiPartParser,
    StrictSerializer,
    choice_param,
    field_with_schema,
    first_message,
)
from core.errors import CommonError, DomainError
from core.permissions import Perm
from core.phones import PATTERN as PHONE_PATTERN
from core.phones import normalize_phone
from tenants.permissions import HasActiveTenant
from whatsapp.sessions import selectors as session_selectors
from whatsapp.sessions.actions import NAME_PATTERN as SESSION_NAME_PATTERN

from . import actions as messaging
from . import media, types
from .errors import MessagingError
from .models import Message
from .payloads import message_payload

TAGS = ["messages"]
SEARCH_MAX = 200
M = Message


CONTACT_FILTER_PATTERN = r"^([0-9]{1,18}|\s*\+[0-9](?:[ ().\-]*[0-9]){6,16}\s*)$"
RECIPIENT_PATTERN = (r"^(\s*\+?[0-9](?:[ ().\-]*[0-9]){6,16}\s*|\s*[0-9]{7,17}@s\.whatsapp\.net\s*"
                     r"|\s*[0-9]{1,30}(-[0-9]{1,20})?@g\.us\s*)$")
CONTACT_CARD_SCHEMA = {"oneOf": [
    {"type": "object", "required": ["name", "phone"], "additionalProperties": False,
     "properties": {"name": {"type": "string", "minLength": 1, "maxLength": types.MAX_CONTACT_NAME},
                    "phone": {"type": "string", "pattern": PHONE_PATTERN}}},
    {"type": "string", "minLength": 1, "maxLength": 10000, "description": "A vCard (BEGIN:VCARD … END:VCARD)."},
]}


class ContactCardField(serializers.Field):
    """An object or a string, passed on as it is: whatsapp.messaging.types checks the card (invalid_contact)."""

    default_error_messages = {"invalid": "Give an object {{\"name\", \"phone\"}} or a vCard string."}

    def to_internal_value(self, data):
        if not isinstance(data, dict | str):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class ReplyToField(serializers.Field):
    """One of our message ids (a number) or WhatsApp's id (a string), passed on as it is to
    whatsapp.messaging.types (invalid_reply_to, unknown_reply_to)."""

    default_error_messages = {"invalid": "Give a message id (a number) or a WhatsApp message id (a string)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | str) or (isinstance(data, str) and len(data) > 128):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class SendMessageSerializer(CopiedFieldsSerializer):
    """A message as JSON. Rules that depend on the type (text needs `text`, media a URL, …) are checked with
    their own codes (whatsapp.messaging.types); the schema states each field's shape."""

    session = field_with_schema(serializers.CharField, {"type": "string", "pattern": SESSION_NAME_PATTERN},
                                max_length=64, help_text="The session's name.")
    to = field_with_schema(serializers.CharField, {"type": "string", "pattern": RECIPIENT_PATTERN},
                           max_length=120, help_text="E.164 number (+14155550123) or a group JID (…@g.us).")
    # The enum is the schema's; an unknown type is answered unsupported_type by whatsapp.messaging.types.
    type = field_with_schema(serializers.CharField, {"type": "string", "enum": list(types.SUPPORTED_TYPES),
                                                     "default": "text"}, max_length=20, required=False,
                             default="text", help_text="What the message is; each type takes the fields its help "
                                                       "names.")
    text = field_with_schema(serializers.CharField, {"type": "string", "maxLength": types.MAX_TEXT_LENGTH},
                             required=False, allow_blank=True, trim_whitespace=False,
                             help_text="text: the message; location: its name.")
    media_url = serializers.CharField(required=False, allow_blank=True, max_length=2000,
                                      help_text="image/document/audio/video: a public http(s) URL fetched now.")
    caption = field_with_schema(serializers.CharField, {"type": "string", "maxLength": types.MAX_CAPTION_LENGTH},
                                required=False, allow_blank=True, trim_whitespace=False,
                                help_text="image/document/video: shown under the media.")
    filename = serializers.CharField(required=False, allow_blank=True, max_length=255,
                                     help_text="The file name shown for a document (default: from the URL/upload).")
    latitude = field_with_schema(serializers.FloatField, {"type": "number", "minimum": -90, "maximum": 90},
                                 required=False, help_text="location")
    longitude = field_with_schema(serializers.FloatField, {"type": "number", "minimum": -180, "maximum": 180},
                                  required=False, help_text="location")
    contact = field_with_schema(ContactCardField, CONTACT_CARD_SCHEMA, required=False,
                                help_text='contact: {"name", "phone"} or a vCard string.')
    reply_to = field_with_schema(ReplyToField, {"oneOf": [{"type": "integer", "minimum": 1},
                                                          {"type": "string", "maxLength": 128}]},
                                 required=False, help_text="Quote a message: one of our message ids or a WhatsApp "
                                                           "message id. reaction: the message reacted to.")
    reaction = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=32,
                                     help_text='reaction: one emoji; "" removes your reaction.')


class SendMessageUploadSerializer(SendMessageSerializer):
    """The same as multipart/form-data, with the media as an upload."""

    file = serializers.FileField(required=False, allow_empty_file=True,
                                 help_text="image/document/audio/video: the file itself, instead of media_url.")


MessageSerializer = inline_serializer("Message", {
    "id": serializers.IntegerField(), "session": serializers.CharField(), "direction": serializers.CharField(),
    "to": serializers.CharField(), "from": serializers.CharField(), "chat": serializers.CharField(),
    "sender_unresolved": serializers.BooleanField(), "type": serializers.CharField(),
    "text": serializers.CharField(), "caption": serializers.CharField(),
    "media": inline_serializer("MessageMedia", {
        "url": serializers.URLField(allow_null=True), "mimetype": serializers.CharField(),
        "size": serializers.IntegerField(allow_null=True), "filename": serializers.CharField(),
        "stored": serializers.BooleanField(), "error": serializers.CharField(allow_null=True)}, allow_null=True),
    "location": inline_serializer("MessageLocation", {
        "latitude": serializers.FloatField(), "longitude": serializers.FloatField(),
        "name": serializers.CharField()}, allow_null=True),
    "contact_card": serializers.JSONField(allow_null=True), "reply_to": serializers.CharField(allow_null=True),
    "reaction": serializers.CharField(allow_null=True), "conversation_id": serializers.IntegerField(allow_null=True),
    "contact_id": serializers.IntegerField(allow_null=True),
    "status": serializers.CharField(), "failure_reason": serializers.CharField(),
    "paced_until": serializers.DateTimeField(allow_null=True, help_text="Queued, waiting for its pacing slot."),
    "paced_reason": serializers.ChoiceField(["interval", "daily_cap"], allow_null=True),
    "provider_message_id": serializers.CharField(allow_null=True), "attempts": serializers.IntegerField(),
    "created_at": serializers.DateTimeField(), "sent_at": serializers.DateTimeField(allow_null=True),
    "delivered_at": serializers.DateTimeField(allow_null=True), "read_at": serializers.DateTimeField(allow_null=True),
    "automation": inline_serializer("MessageAutomation", {
        # The kinds of whatsapp.automation's log, read through the app registry: that app builds on this one.
        "kind": serializers.ChoiceField(apps.get_model("whatsapp", "AutomationLog").Kind.values),
        "source": serializers.CharField(help_text='The keyword rule\'s name, "bot", or the kind\'s name '
                                                  '("Away message", "Greeting", "Fallback reply").'),
        "label": serializers.CharField(help_text='What the conversation page shows: "Automatic · Away message", '
                                                 '"Automatic · rule ‘prices’", "Automatic · bot".'),
    }, allow_null=True, read_only=True, help_text="Which automation sent this message (whatsapp automation: an "
                                                  "away message, a keyword rule, the bot …); null when none did."),
})


def _sha256(upload):
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return f"sha256:{digest.hexdigest()}"


def _idempotency_key(request):
    key = (request.headers.get("Idempotency-Key") or "").strip() or None
    if key and len(key) > 240:  # a batch's messages store it with "#<index>" after it, in 255 characters
        raise DomainError(MessagingError.INVALID_IDEMPOTENCY_KEY, "Idempotency-Key holds at most 240 characters.")
    return key


def _contact_filter(value):
    """?contact=: a contact's id, or a phone number written with its "+" (the messages to and from it)."""
    value = value.strip()
    if value.isdigit():
        return Q(contact_id=int(value))
    try:
        phone = normalize_phone(value)
    except DomainError:
        raise DomainError(MessagingError.INVALID_CONTACT,
                          f"'{value}' is neither a contact id nor a +phone number.") from None
    return Q(to_phone=phone) | Q(from_phone=phone)


class MessageListView(APIView):
    required_permissions = {"GET": Perm.MESSAGES_READ, "POST": Perm.MESSAGES_SEND}
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]
    parser_classes = [StrictJSONParser, StrictMultiPartParser]

    @extend_schema(tags=TAGS, operation_id="messages_list", parameters=[
        OpenApiParameter("session", {"type": "string", "pattern": SESSION_NAME_PATTERN},
                         description="Only this session's messages (its name)."),
        OpenApiParameter("direction", str, enum=M.Direction.values),
        OpenApiParameter("status", str, enum=M.Status.values),
        OpenApiParameter("contact", {"type": "string", "pattern": CONTACT_FILTER_PATTERN},
                         description="A contact's id, or a phone number with its + (+14155550123): the messages to "
                                     "and from it."),
        OpenApiParameter("search", {"type": "string", "maxLength": SEARCH_MAX},
                         description="Only messages whose text or caption contains this (any case). Not available "
                                     "when the installation encrypts message bodies: 400 "
                                     "search_unavailable_encrypted."),
        *PAGE_PARAMETERS,
    ], responses={200: type(MessageSerializer)(many=True), 400: OpenApiResponse(description=(
        "Bad request: a filter is not valid (invalid_direction, invalid_status, invalid_contact, invalid_search), "
        "or search was given while message bodies are encrypted at rest (search_unavailable_encrypted).")),
        503: ENCRYPTION_KEY_UNAVAILABLE})
    def get(self, request):
        """The tenant's messages, newest first."""
        messages = Message.objects.select_related("session", "automation")
        params = request.query_params
        session = session_selectors.from_filter(request)
        if session is not None:
            messages = messages.filter(session=session)
        for field, allowed in (("direction", M.Direction.values), ("status", M.Status.values)):
            wanted = choice_param(request, field, allowed, MessagingError(f"invalid_{field}"))
            if wanted is not None:
                messages = messages.filter(**{field: wanted})
        if "contact" in params:
            messages = messages.filter(_contact_filter(params["contact"]))
        search = (params.get("search") or "").strip()
        if len(search) > SEARCH_MAX:
            raise DomainError(MessagingError.INVALID_SEARCH, f"search holds at most {SEARCH_MAX} characters.")
        if search:
            crypto.refuse_search()
            messages = messages.filter(Q(text__icontains=search) | Q(caption__icontains=search))
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(messages, request, view=self)
        return paginator.get_paginated_response([message_payload(m) for m in page])

    @extend_schema(tags=TAGS, operation_id="messages_send", request={
        "application/json": SendMessageSerializer, "multipart/form-data": SendMessageUploadSerializer}, parameters=[
        OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                         description="Send the same request again with the same key to get the same message."),
    ], responses={202: MessageSerializer, 200: MessageSerializer})
    def post(self, request):
        """Queue a message: 202 {id, status: "queued"}, then follow it to sent, delivered, read or failed.
        JSON, or multipart/form-data with the media as `file`. A linked session that is starting or reconnecting
        queues it too. Codes: 404 not_found (session); 409 session_not_connected (details.status: logged out,
        never linked, stopped, error); 400 validation_error, unsupported_type (details.supported),
        missing_text, text_too_long, caption_too_long, unexpected_caption, unexpected_media, missing_media,
        media_url_and_file, invalid_media_url, media_url_forbidden (private address), empty_media,
        invalid_location, invalid_contact, missing_reaction, invalid_reaction, missing_reply_to, invalid_reply_to,
        unknown_reply_to, invalid_recipient, blocked_recipient; 413 media_too_large; 415 unsupported_media_type;
        422 media_unreachable (details.reason: DNS, connection refused, timeout, HTTP status); 409
        idempotency_conflict (the key was used with another body or file); a replay with the same key and body
        answers 200 with the first message."""
        upload = request.content_type.startswith("multipart/")
        serializer = (SendMessageUploadSerializer if upload else SendMessageSerializer)(data=request.data)
        if not serializer.is_valid():
            raise exceptions.ValidationError(serializer.errors)
        key = _idempotency_key(request)
        body = {k: request.data.get(k) for k in messaging.message_types.REQUEST_FIELDS}
        body["file"] = _sha256(request.FILES["file"]) if "file" in request.FILES else None
        message, created = messaging.queue_message(request._request.tenant, body=body, files=request.FILES,
                                                   idempotency_key=key)
        response = Response(message_payload(message),
                            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


@extend_schema_field({"type": "array", "minItems": 1, "maxItems": messaging.BATCH_MAX,
                      "items": {"$ref": "#/components/schemas/SendMessageRequest"}})
class MessageList(serializers.ListSerializer):
    pass


class SendBatchSerializer(StrictSerializer):
    messages = MessageList(child=SendMessageSerializer(), min_length=1, max_length=messaging.BATCH_MAX,
                                     help_text=f"1 to {messaging.BATCH_MAX} messages, each as for POST "
                                               "/api/v1/messages (media by media_url: no uploads here).")


def _check_shape(body):
    """One message of a batch, checked as POST /api/v1/messages checks a request's fields."""
    if body.get("file") is not None:
        raise DomainError(MessagingError.UNEXPECTED_FILE,
                          "A batch takes media by media_url; upload files one message at a time.")
    serializer = SendMessageSerializer(data=body)
    if not serializer.is_valid():
        raise DomainError(CommonError.VALIDATION_ERROR, first_message(serializer.errors), serializer.errors)


class MessageBatchView(APIView):
    required_permission = Perm.MESSAGES_SEND
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]
    parser_classes = [StrictJSONParser]

    @extend_schema(tags=TAGS, operation_id="messages_send_batch", request=SendBatchSerializer, parameters=[
        OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                         description="Send the same batch again with the same key to get the same messages."),
    ], responses={202: inline_serializer("MessageBatch", {"messages": type(MessageSerializer)(many=True)})})
    def post(self, request):
        """Queue up to 100 messages at once (a campaign, a burst): 202 {messages: [{id, status: "queued"}, …]} in
        the order sent. All or nothing: when any message is invalid nothing is queued and the answer is 400 (or
        the one status every error shares: 404, 409 …) invalid_messages with details.errors = [{index, status,
        code, message, details}] for every invalid message. 400 missing_messages, batch_too_large (details.max),
        batch_over_rate_limit; 429 rate_limited counts every message of the batch; 409 idempotency_conflict."""
        bodies = request.data.get("messages") if isinstance(request.data, dict) else None
        key = _idempotency_key(request)
        messages, created = messaging.queue_messages(request._request.tenant, bodies=bodies, idempotency_key=key,
                                                     check=_check_shape)
        response = Response({"messages": [message_payload(m) for m in messages]},
                            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class MessageDetailView(APIView):
    required_permission = Perm.MESSAGES_READ
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(tags=TAGS, parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
                   responses={200: MessageSerializer, 503: ENCRYPTION_KEY_UNAVAILABLE})
    def get(self, request, pk):
        message = Message.objects.select_related("session", "automation").filter(pk=pk).first()
        if message is None:
            raise exceptions.NotFound("No such message.")
        return Response(message_payload(message))


class MessageMediaView(APIView):
    required_permission = Perm.MESSAGES_READ
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(tags=TAGS, operation_id="messages_media", parameters=[
        OpenApiParameter("id", int, OpenApiParameter.PATH)],
        responses={(200, "application/octet-stream"): bytes})
    def get(self, request, pk):
        """The message's stored media file (sent or received), with its Content-Type, as an attachment.
        404 not_found when the message is not this tenant's, has no stored media, or the file is gone."""
        message = Message.objects.filter(pk=pk).exclude(media_file="").first()
        if message is None:
            raise exceptions.NotFound("This message has no stored media.")
        try:
            handle = media.open_stored(message.media_file)  # decrypted when stored encrypted
        except (OSError, ValueError):
            raise exceptions.NotFound("This message's media file is missing.") from None
        extension = os.path.splitext(message.media_file)[1]
        response = FileResponse(handle, as_attachment=True,
                                filename=message.media_filename or f"message-{message.pk}{extension}",
                                content_type=message.media_mimetype or "application/octet-stream")
        response["X-Content-Type-Options"] = "nosniff"
        return response


urlpatterns = [
    path("messages", MessageListView.as_view(), name="api_messages"),
    path("messages/batch", MessageBatchView.as_view(), name="api_messages_batch"),
    path("messages/<int:pk>", MessageDetailView.as_view(), name="api_message"),
    path("messages/<int:pk>/media", MessageMediaView.as_view(), name="api_message_media"),
]
