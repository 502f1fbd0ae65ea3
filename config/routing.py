from django.urls import path

from tenants.consumers import TenantStatusConsumer
from whatsapp.consumers import SessionConsumer, SessionListConsumer

websocket_urlpatterns = [
    path("ws/tenant/status/", TenantStatusConsumer.as_asgi()),
    path("ws/sessions/", SessionListConsumer.as_asgi()),
    path("ws/sessions/<str:name>/", SessionConsumer.as_asgi()),
]
