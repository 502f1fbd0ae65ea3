from django.urls import path

from analytics.consumers import AnalyticsConsumer
from backups.consumers import BackupsConsumer, DataExportConsumer
from tenants.consumers import TenantStatusConsumer

# Conversation sockets are listed in whatsapp/conversation_routing.py.
from whatsapp.campaigns.consumers import CampaignConsumer
from whatsapp.inbox.routing import websocket_urlpatterns as conversation_websockets
from whatsapp.sessions.consumers import SessionConsumer, SessionListConsumer

websocket_urlpatterns = [
    path("ws/tenant/status/", TenantStatusConsumer.as_asgi()),
    path("ws/sessions/", SessionListConsumer.as_asgi()),
    path("ws/sessions/<str:name>/", SessionConsumer.as_asgi()),
    *conversation_websockets,
    path("ws/backups/", BackupsConsumer.as_asgi()),
    path("ws/data-export/", DataExportConsumer.as_asgi()),
    path("ws/campaigns/<int:campaign_id>/", CampaignConsumer.as_asgi()),
    path("ws/analytics/", AnalyticsConsumer.as_asgi()),
]
