from django.urls import path

from .consumers import ConversationConsumer, ConversationListConsumer

websocket_urlpatterns = [
    path("ws/conversations/", ConversationListConsumer.as_asgi()),
    path("ws/conversations/<int:conversation_id>/", ConversationConsumer.as_asgi()),
]
