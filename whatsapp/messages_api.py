"""Messages over the API: POST/GET /api/v1/messages, GET /api/v1/messages/{id}.

The request runs in the caller's tenant schema, so another tenant's message id is a 404 like an unknown one.
Sending needs a paying tenant (402 payment_required while read-only). This slice sends text only; other types
answer 400 unsupported_type.
"""
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import CanWrite, HasActiveTenant
from config.api import ApiError, PageLimitPagination

from . import messaging
from .models import Message

TAGS = ["messages"]
M = Message


class SendMessageSerializer(serializers.Serializer):
    session = serializers.CharField(max_length=64, help_text="The session's name.")
    to = serializers.CharField(max_length=120, help_text="E.164 number (+14155550123) or a group JID (…@g.us).")
    type = serializers.CharField(max_length=20, required=False, default="text", help_text="Only text for now.")
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


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
    "provider_message_id": serializers.CharField(allow_null=True), "attempts": serializers.IntegerField(),
    "created_at": serializers.DateTimeField(), "sent_at": serializers.DateTimeField(allow_null=True),
    "delivered_at": serializers.DateTimeField(allow_null=True), "read_at": serializers.DateTimeField(allow_null=True),
})


class MessageListView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant, CanWrite]

    @extend_schema(tags=TAGS, operation_id="messages_list", parameters=[
        OpenApiParameter("session", str, description="Only this session's messages (its name)."),
        OpenApiParameter("direction", str, enum=M.Direction.values),
        OpenApiParameter("status", str, enum=M.Status.values),
        OpenApiParameter("page", int),
        OpenApiParameter("limit", int),
    ], responses=MessageSerializer)
    def get(self, request):
        """The tenant's messages, newest first."""
        messages = Message.objects.select_related("session")
        params = request.query_params
        if params.get("session"):
            messages = messages.filter(session__name=params["session"])
        for field, allowed in (("direction", M.Direction.values), ("status", M.Status.values)):
            wanted = params.get(field)
            if wanted:
                if wanted not in allowed:
                    raise ApiError(400, f"invalid_{field}", f"Unknown {field} '{wanted}'.", {"allowed": allowed})
                messages = messages.filter(**{field: wanted})
        paginator = PageLimitPagination()
        page = paginator.paginate_queryset(messages, request, view=self)
        return paginator.get_paginated_response([messaging.message_payload(m) for m in page])

    @extend_schema(tags=TAGS, operation_id="messages_send", request=SendMessageSerializer, parameters=[
        OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                         description="Send the same request again with the same key to get the same message."),
    ], responses={202: MessageSerializer, 200: MessageSerializer})
    def post(self, request):
        """Queue a text message: 202 {id, status: "queued"}, then follow it to sent, delivered, read or failed.
        404 unknown session; 409 session_not_connected (details.status); 400 unsupported_type, missing_text,
        invalid_recipient, blocked_recipient; 409 idempotency_conflict (the key was used with another body);
        a replay with the same key and body answers 200 with the first message."""
        serializer = SendMessageSerializer(data=request.data)
        if not serializer.is_valid():
            raise exceptions.ValidationError(serializer.errors)
        key = (request.headers.get("Idempotency-Key") or "").strip() or None
        if key and len(key) > 255:
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key holds at most 255 characters.")
        body = {k: request.data.get(k) for k in messaging.message_types.REQUEST_FIELDS}
        message, created = messaging.queue_message(request._request.tenant, body=body, files=request.FILES,
                                                   idempotency_key=key)
        response = Response(messaging.message_payload(message),
                            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class MessageDetailView(APIView):
    permission_classes = [permissions.IsAuthenticated, HasActiveTenant]

    @extend_schema(tags=TAGS, parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)],
                   responses=MessageSerializer)
    def get(self, request, pk):
        message = Message.objects.select_related("session").filter(pk=pk).first()
        if message is None:
            raise exceptions.NotFound("No such message.")
        return Response(messaging.message_payload(message))


urlpatterns = [
    path("messages", MessageListView.as_view(), name="api_messages"),
    path("messages/<int:pk>", MessageDetailView.as_view(), name="api_message"),
]
