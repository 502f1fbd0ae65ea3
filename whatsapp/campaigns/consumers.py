"""The campaign page's live progress over a websocket (ws/campaigns/<id>/).

The tenant is the logged-in user's (tenants.channels middleware); the campaign is looked up in its schema, so an id
that is not the tenant's closes the socket with 4404 before anything is sent. On connect the current figures are
sent; then every update of group t.<schema>.campaign.<id> (whatsapp.campaigns.progress.push):
  {"type": "campaign.progress", "data": progress}
"""
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django_tenants.utils import tenant_context

from billing import entitlements
from core.permissions import Perm, socket_can
from core.sockets import FORBIDDEN, NOT_FOUND, refuse

from . import progress
from .models import Campaign


def _figures(tenant, campaign_id):
    with tenant_context(tenant):
        if not tenant.is_active or entitlements.access_for(tenant).level == entitlements.SUSPENDED:
            return False
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        return progress.progress(campaign, tenant) if campaign is not None else None


class CampaignConsumer(AsyncJsonWebsocketConsumer):
    required_permission = Perm.CAMPAIGNS_READ  # core.permissions: a role without it is refused with 4403
    group_name = None

    async def connect(self):
        user, tenant = self.scope.get("user"), self.scope.get("tenant")
        if user is None or not user.is_authenticated or tenant is None or not tenant.has_schema:
            await refuse(self, NOT_FOUND)
            return
        if not socket_can(self.scope, self.required_permission):
            await refuse(self, FORBIDDEN)
            return
        campaign_id = int(self.scope["url_route"]["kwargs"]["campaign_id"])
        figures = await database_sync_to_async(_figures)(tenant, campaign_id)
        if not figures:
            await refuse(self, NOT_FOUND if figures is None else FORBIDDEN)
            return
        self.group_name = progress.group(tenant.schema_name, campaign_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        await self.send_json({"type": "campaign.progress", "data": figures})

    async def disconnect(self, code):
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def campaign_progress(self, event):
        await self.send_json({"type": "campaign.progress", "data": event["data"]})
