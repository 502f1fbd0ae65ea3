from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.permissions import Perm
from core.sockets import NOT_FOUND, refuse

from . import notify
from .models import Tenant


class TenantStatusConsumer(AsyncJsonWebsocketConsumer):
    """Live status of the user's tenant (provisioning progress, approval) and, for platform admins, the
    pending sign-up count."""

    required_permission = Perm.SIGNED_IN

    async def connect(self):
        user = self.scope.get("user")
        tenant = self.scope.get("tenant")
        if not user or not user.is_authenticated or (tenant is None and not user.is_platform_admin):
            await refuse(self, NOT_FOUND)
            return
        self.groups_joined = []
        if tenant is not None:
            self.groups_joined.append(notify.status_group(tenant.pk))
        if user.is_platform_admin:
            self.groups_joined.append(notify.PLATFORM_GROUP)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        if tenant is not None:
            await self.send_json({"type": "tenant.status", "data": await self._current(tenant.pk)})

    @database_sync_to_async
    def _current(self, tenant_id):

        return notify.status_payload(Tenant.objects.get(pk=tenant_id))

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def tenant_status(self, event):
        await self.send_json({"type": "tenant.status", "data": event["data"]})

    async def platform_pending(self, event):
        await self.send_json({"type": "platform.pending", "data": event["data"]})
