"""Live conversation pages over websockets (the tenant and its checks as in whatsapp.sessions.consumers).

/ws/conversations/        the list page: every message.update of the tenant, contacts.synced, conversation.update
                          (a status or an assignee changed: whatsapp.inbox.actions)
/ws/conversations/<id>/   one conversation: its messages' message.update, its conversation.update; an id that is
                          not in the tenant's schema (unknown, or another tenant's) closes with 4404 before anything
                          is sent

Both keep the member's presence (whatsapp.inbox.presence): heard from on connect and on each heartbeat ping, gone on
disconnect; when a member comes online or leaves, list pages get {"type": "members.presence", "data": {"online":
[membership ids]}}.

On connect each sends a snapshot ({"type": "conversations.snapshot" | "conversation.snapshot"}) so that what
changed between the page's render and the socket's join (or during a reconnect) is not lost: the page upserts.
"""
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db.models import F
from django_tenants.utils import tenant_context

from core.permissions import Perm
from whatsapp.conversations.models import Conversation
from whatsapp.live import conversation_group, conversation_summary, conversations_group
from whatsapp.messaging.models import Message
from whatsapp.messaging.payloads import message_payload
from whatsapp.sessions.consumers import _tenant_usable, _TenantConsumer

from . import presence

SNAPSHOT_CONVERSATIONS = 100
SNAPSHOT_MESSAGES = 50


class _InboxConsumer(_TenantConsumer):
    """Keeps the member's presence while the page is open."""

    tenant = None

    def _membership_id(self):
        membership = self.scope.get("membership")
        return getattr(membership, "pk", None)

    async def _heard(self):
        member = self._membership_id()
        if member is None or self.tenant is None:
            return
        came = await sync_to_async(presence.seen)(self.tenant.schema_name, member, self.channel_name)
        if came:
            await self._announce_presence()

    async def _announce_presence(self):
        online = await sync_to_async(presence.online_member_ids)(self.tenant.schema_name)
        await self.channel_layer.group_send(conversations_group(self.tenant.schema_name),
                                            {"type": "members.presence", "data": {"online": sorted(online)}})

    async def receive_json(self, content, **kwargs):
        await super().receive_json(content, **kwargs)
        if isinstance(content, dict) and content.get("type") == "ping":
            await self._heard()

    async def disconnect(self, code):
        await super().disconnect(code)
        member = self._membership_id()
        if member is not None and self.tenant is not None:
            left = await sync_to_async(presence.gone)(self.tenant.schema_name, member, self.channel_name)
            if left:
                await self._announce_presence()

    async def members_presence(self, event):
        await self.send_json({"type": "members.presence", "data": event["data"]})


class ConversationListConsumer(_InboxConsumer):
    required_permission = Perm.CONVERSATIONS_READ

    async def connect(self):
        tenant = await self._usable_tenant()
        if tenant is None:
            return
        self.tenant = tenant
        await self.join(conversations_group(tenant.schema_name))  # before the snapshot: nothing falls between
        await self.accept()
        await self.send_json({"type": "conversations.snapshot",
                              "data": await database_sync_to_async(self._snapshot)()})
        await self._heard()

    def _snapshot(self):
        with tenant_context(self.tenant):
            rows = (Conversation.objects.select_related("session", "contact", "group")
                    .order_by(F("last_message_at").desc(nulls_last=True), "-id")[:SNAPSHOT_CONVERSATIONS])
            return {"conversations": [conversation_summary(row) for row in rows]}

    async def messages_update(self, event):
        for item in event["data"]:  # a batch from whatsapp.live: the browser hears of each message
            await self.send_json({"type": "message.update", "data": item})

    async def contacts_synced(self, event):
        await self.send_json({"type": "contacts.synced", "data": event["data"]})

    async def conversation_update(self, event):
        await self.send_json({"type": "conversation.update", "data": event["data"]})


class ConversationConsumer(_InboxConsumer):
    required_permission = Perm.CONVERSATIONS_READ

    async def connect(self):
        conversation_id = self.scope["url_route"]["kwargs"].get("conversation_id")
        tenant, _ = await self._found_in_tenant(self._find, conversation_id)
        if tenant is None:
            return
        self.tenant, self.conversation_id = tenant, conversation_id
        await self.join(conversation_group(tenant.schema_name, conversation_id))
        await self.accept()
        await self.send_json({"type": "conversation.snapshot",
                              "data": await database_sync_to_async(self._snapshot)()})
        await self._heard()

    @staticmethod
    def _find(tenant, conversation_id):
        """True when the tenant has this conversation; None when not; False when the tenant is suspended."""
        with tenant_context(tenant):
            if not Conversation.objects.filter(pk=conversation_id).exists():
                return None
            return True if _tenant_usable(tenant) else False

    def _snapshot(self):
        with tenant_context(self.tenant):
            conversation = (Conversation.objects.select_related("session", "contact", "group")
                            .filter(pk=self.conversation_id).first())
            if conversation is None:
                return {"conversation": None, "messages": []}
            rows = list(Message.objects.select_related("automation").filter(conversation=conversation)
                        .order_by("-created_at", "-id")
                        [:SNAPSHOT_MESSAGES])
            name = conversation.session.name
            return {"conversation": conversation_summary(conversation, name),
                    "messages": [message_payload(row, name) for row in reversed(rows)]}

    async def messages_update(self, event):
        for item in event["data"]:
            if item.get("conversation_id") == self.conversation_id:
                await self.send_json({"type": "message.update", "data": item})

    async def conversation_update(self, event):
        if event["data"].get("id") == self.conversation_id:
            await self.send_json({"type": "conversation.update", "data": event["data"]})

    async def conversation_typing(self, event):
        if event["data"].get("conversation_id") == self.conversation_id:
            await self.send_json({"type": "conversation.typing", "data": event["data"]})
