"""/ws/analytics/: the Analytics page's live figures (every member of a workspace whose plan includes analytics).

While the page is open the consumer looks every ANALYTICS_LIVE_SECONDS at the counter's sequence (one row read,
analytics.selectors.counted_changes_version), which moves with every change of every message of the tenant however
it was written, and at session changes (the sessions group); when either moved it sends the dashboard's figures and
the chart's days again: {"type": "analytics.update", "data": {"dashboard": …, "trend": [...]}}.
?days=7|30|90&session=<name> name the chart, as on the page.
"""
import asyncio
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django_tenants.utils import tenant_context

from core.permissions import Perm
from core.sockets import FORBIDDEN, refuse

from whatsapp.sessions.consumers import _TenantConsumer
from whatsapp.sessions.events import sessions_group
from whatsapp.sessions.models import WhatsAppSession

from . import selectors
from .access import plan_includes_analytics
from .views import CHART_DAYS


class AnalyticsConsumer(_TenantConsumer):
    required_permission = Perm.ANALYTICS_READ

    async def connect(self):
        tenant = await self._usable_tenant()
        if tenant is None:
            return
        if not plan_includes_analytics(tenant):
            await refuse(self, FORBIDDEN)
            return
        self.tenant = tenant
        query = parse_qs(self.scope.get("query_string", b"").decode())
        raw_days = (query.get("days") or ["30"])[0]
        self.days = int(raw_days) if raw_days.isdigit() and int(raw_days) in CHART_DAYS else 30
        self.session_name = (query.get("session") or [""])[0]
        self.version = None
        self.dirty = asyncio.Event()
        await self.join(sessions_group(tenant.schema_name))
        await self.accept()
        self.watcher = asyncio.ensure_future(self._watch())

    async def disconnect(self, code):
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.cancel()
        await super().disconnect(code)

    async def session_update(self, event):
        self.dirty.set()

    async def session_deleted(self, event):
        self.dirty.set()

    async def _watch(self):
        while True:
            version = await database_sync_to_async(self._version)()
            if version != self.version or self.dirty.is_set():
                self.dirty.clear()
                self.version = version  # the first look sends too: what changed since the page was rendered
                await self.send_json({"type": "analytics.update",
                                      "data": await database_sync_to_async(self._figures)()})
            try:
                await asyncio.wait_for(self.dirty.wait(), timeout=settings.ANALYTICS_LIVE_SECONDS)
            except TimeoutError:
                pass

    def _version(self):
        with tenant_context(self.tenant):
            return selectors.counted_changes_version()

    def _figures(self):
        with tenant_context(self.tenant):
            session = WhatsAppSession.objects.filter(name=self.session_name).first() if self.session_name else None
            zone = selectors.zone_of(self.tenant)
            return {"dashboard": selectors.dashboard(self.tenant),
                    "trend": selectors.trends(zone, self.days, session.pk if session else None)}
