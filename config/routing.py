from django.urls import path

from tenants.consumers import TenantStatusConsumer

websocket_urlpatterns = [
    path("ws/tenant/status/", TenantStatusConsumer.as_asgi()),
]
