import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config import http  # noqa: E402

django_asgi_app = http.application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from tenants.channels import TenantPrincipalMiddlewareStack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(TenantPrincipalMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

if os.environ.get("SWITCHBOARD_PROCESS") == "web":  # a daphne of scripts/web.py: say it is alive, and its memory
    import socket  # noqa: E402

    from core import heartbeats  # noqa: E402

    heartbeats.keep_beating("web", f"{socket.gethostname()}:{os.getpid()}")
