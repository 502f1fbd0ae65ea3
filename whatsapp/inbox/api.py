"""A conversation's messages over the API: GET /api/v1/conversations/{id}/messages (included by config/urls.py)."""
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers

from core.api import PAGE_PARAMETERS, paginated
from whatsapp.conversations.api import ID_PARAMETER, DirectoryView
from whatsapp.conversations.models import Conversation
from whatsapp.messaging.api import MessageSerializer
from whatsapp.messaging.models import Message
from whatsapp.messaging.payloads import message_payload


class ConversationMessagesView(DirectoryView):
    @extend_schema(tags=["conversations"], parameters=[ID_PARAMETER, *PAGE_PARAMETERS],
                   responses=serializers.ListSerializer(child=MessageSerializer))
    def get(self, request, pk):
        """One conversation's messages, newest first."""
        conversation = Conversation.objects.filter(pk=pk).first()
        if conversation is None:
            raise exceptions.NotFound("No such conversation.")
        rows = Message.objects.select_related("session").filter(conversation=conversation).order_by(
            "-created_at", "-id")
        return paginated(request, self, rows, message_payload)


urlpatterns = [
    path("conversations/<int:pk>/messages", ConversationMessagesView.as_view(), name="api_conversation_messages"),
]
