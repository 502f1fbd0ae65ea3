"""Live progress of backups, restores and data exports over websockets.

/ws/backups/: platform admins only (anyone else is closed with 4404); every backup and restore change.
/ws/data-export/: the owner of the socket's tenant (scope["tenant"], tenants.channels) — its exports only, the
group carrying the schema (t.<schema>.data_export).

Messages to the browser: {"type": "work.update", "data": backups.progress.payload(row)}, first for the work in
progress or finished in the last minutes when the socket opens (a page whose socket dropped catches up when it
reconnects), then as it changes.
"""
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Q
from django.utils import timezone

from core.permissions import Perm, socket_can

from .models import ACTIVE_STATUSES, Backup, DataExport, Restore
from .progress import PLATFORM_GROUP, export_group, payload

NOT_FOUND = 4404
RECENT = timedelta(minutes=10)


def _current_or_recent():
    return Q(status__in=ACTIVE_STATUSES) | Q(finished_at__gte=timezone.now() - RECENT)


class _WorkConsumer(AsyncJsonWebsocketConsumer):
    group = None

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def work_update(self, event):
        await self.send_json({"type": "work.update", "data": event["data"]})

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def start(self, group, snapshot):
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)  # before the snapshot: no change falls between
        await self.accept()
        for data in await database_sync_to_async(snapshot)():
            await self.send_json({"type": "work.update", "data": data})


class BackupsConsumer(_WorkConsumer):
    required_permission = Perm.PLATFORM

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_platform_admin:
            await self.close(code=NOT_FOUND)
            return
        await self.start(PLATFORM_GROUP, self._snapshot)

    @staticmethod
    def _snapshot():
        return [payload(row) for model in (Backup, Restore) for row in model.objects.filter(_current_or_recent())]


class DataExportConsumer(_WorkConsumer):
    required_permission = Perm.DATA_EXPORT

    async def connect(self):
        user, tenant, membership = self.scope.get("user"), self.scope.get("tenant"), self.scope.get("membership")
        if (user is None or not user.is_authenticated or tenant is None or membership is None
                or not tenant.has_schema or not socket_can(self.scope, self.required_permission)):
            await self.close(code=NOT_FOUND)
            return
        self.tenant_id = tenant.pk
        await self.start(export_group(tenant.schema_name), self._snapshot)

    def _snapshot(self):
        return [payload(row) for row in DataExport.objects.filter(_current_or_recent(), tenant_id=self.tenant_id)
                .select_related("tenant")]
