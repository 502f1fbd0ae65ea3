"""Live session pages over websockets.

The tenant is scope["tenant"] (tenants.channels.TenantPrincipalMiddleware: the logged-in user's membership),
every database call runs under tenant_context(scope["tenant"]), and the groups carry the schema
(whatsapp.sessions.events.session_group / sessions_group). A session name that is not in the tenant's schema — a
typo or another tenant's session — closes the socket with 4404 before anything is sent.

Messages to the browser:
  {"type": "session.update", "data": session_payload}      on connect (current state) and on every change; the QR
                                                             and pairing codes only to roles with sessions.manage
                                                             (blank for the others: events.without_linking_codes)
  {"type": "session.activity", "data": {"replace": bool, "items": [...]}}   session page: the log (latest 50 on
                                                             connect, then the rows added since)
  {"type": "session.deleted", "data": {"id", "name"}}
  {"type": "pong"}                                          answer to the page's {"type": "ping"} heartbeat
"""
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django_tenants.utils import tenant_context

from billing import entitlements
from core.permissions import Perm, socket_can
from core.sockets import FORBIDDEN, NOT_FOUND, member_group, refuse

from .actions import NAME_RE
from .events import session_group, session_payload, sessions_group, without_linking_codes
from .models import SessionActivity, WhatsAppSession

ACTIVITY_SHOWN = 50


def activity_payload(row):
    return {"id": row.pk, "kind": row.kind, "kind_display": row.get_kind_display(), "message": row.message,
            "created_at": row.created_at.isoformat()}


def _tenant_usable(tenant):
    return (tenant is not None and tenant.is_active
            and entitlements.access_for(tenant).level != entitlements.SUSPENDED)


def _usable_in_schema(tenant):
    with tenant_context(tenant):
        return _tenant_usable(tenant)


class _TenantConsumer(AsyncJsonWebsocketConsumer):
    groups_joined = ()
    required_permission = Perm.SESSIONS_READ  # core.permissions: a role without it is refused with 4403

    def _principal_tenant(self):
        user, tenant = self.scope.get("user"), self.scope.get("tenant")
        if user is None or not user.is_authenticated or tenant is None or not tenant.has_schema:
            return None
        return tenant

    async def _usable_tenant(self):
        """The principal's tenant when it may watch; else the socket is closed (4404 without a tenant, 4403
        when it is suspended) and None returned."""
        tenant = self._principal_tenant()
        if tenant is not None and not socket_can(self.scope, self.required_permission):
            await refuse(self, FORBIDDEN)
            return None
        usable = tenant is not None and await database_sync_to_async(_usable_in_schema)(tenant)
        if not usable:
            await refuse(self, NOT_FOUND if tenant is None else FORBIDDEN)
            return None
        return tenant

    async def _found_in_tenant(self, find, key):
        """(tenant, find(tenant, key)) when the principal's tenant has the thing and may watch; else the socket
        is closed — 4404 when find returns None (unknown, another tenant's) or there is no tenant, 4403 when it
        returns False (suspended) — and (None, None) returned."""
        tenant = self._principal_tenant()
        if tenant is not None and not socket_can(self.scope, self.required_permission):
            await refuse(self, FORBIDDEN)
            return None, None
        found = await database_sync_to_async(find)(tenant, key) if tenant is not None else None
        if found is None or found is False:
            await refuse(self, NOT_FOUND if found is None else FORBIDDEN)
            return None, None
        return tenant, found

    def shown(self, payload):
        """What this socket may see of a session's payload: the linking codes only for those who manage sessions
        (by the role the socket connected with)."""
        if socket_can(self.scope, Perm.SESSIONS_MANAGE):
            return payload
        return without_linking_codes(payload)

    async def join(self, *groups):
        user, tenant = self.scope.get("user"), self.scope.get("tenant")
        groups = (*groups, member_group(tenant.pk, user.pk))  # removing the member closes this socket
        self.groups_joined = groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code):
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def member_removed(self, event):
        await self.close(code=FORBIDDEN)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def session_deleted(self, event):
        await self.send_json({"type": "session.deleted", "data": event["data"]})


class SessionListConsumer(_TenantConsumer):
    """/ws/sessions/: every session of the tenant (the list page)."""

    async def connect(self):
        tenant = await self._usable_tenant()
        if tenant is None:
            return
        self.tenant = tenant
        # Join before reading, so that no change falls between the snapshot and the first update.
        await self.join(sessions_group(tenant.schema_name))
        await self.accept()
        for payload in await database_sync_to_async(self._snapshot)():
            await self.send_json({"type": "session.update", "data": self.shown(payload)})

    def _snapshot(self):
        with tenant_context(self.tenant):
            return [session_payload(session) for session in WhatsAppSession.objects.all()]

    async def session_update(self, event):
        await self.send_json({"type": "session.update", "data": self.shown(event["data"])})


class SessionConsumer(_TenantConsumer):
    """/ws/sessions/<name>/: one session (its page): state, QR code, pairing code, activity log."""

    async def connect(self):
        name = self.scope["url_route"]["kwargs"].get("name", "")
        tenant, found = await self._found_in_tenant(self._find, name)
        if tenant is None:
            return
        self.tenant, self.session_id, self.last_activity_id = tenant, found, 0
        await self.join(session_group(tenant.schema_name, self.session_id))
        await self.accept()
        payload, items = await database_sync_to_async(self._snapshot)()
        if payload is None:  # deleted in between
            await self.send_json({"type": "session.deleted", "data": {"id": self.session_id, "name": name}})
            return
        await self.send_json({"type": "session.update", "data": self.shown(payload)})
        await self._send_activity(items, replace=True)

    @staticmethod
    def _find(tenant, name):
        """The session's id; None when the tenant has no such session; False when the tenant is suspended."""
        if not NAME_RE.match(name or ""):
            return None
        with tenant_context(tenant):
            session_id = WhatsAppSession.objects.filter(name=name).values_list("pk", flat=True).first()
            if session_id is None:
                return None
            return session_id if _tenant_usable(tenant) else False

    def _snapshot(self):
        with tenant_context(self.tenant):
            session = WhatsAppSession.objects.filter(pk=self.session_id).first()
            if session is None:
                return None, []
            rows = SessionActivity.objects.filter(session_id=self.session_id)[:ACTIVITY_SHOWN]
            return session_payload(session), [activity_payload(row) for row in rows]

    def _activity_since(self, after_id):
        with tenant_context(self.tenant):
            rows = SessionActivity.objects.filter(session_id=self.session_id, pk__gt=after_id)[:ACTIVITY_SHOWN]
            return [activity_payload(row) for row in rows]

    async def _send_activity(self, items, *, replace=False):
        if items:
            self.last_activity_id = max(self.last_activity_id, max(item["id"] for item in items))
        if items or replace:
            await self.send_json({"type": "session.activity", "data": {"replace": replace, "items": items}})

    async def session_update(self, event):
        if event["data"].get("id") != self.session_id:
            return
        # The update first (it is what the page waits for), then the log rows the change wrote.
        await self.send_json({"type": "session.update", "data": self.shown(event["data"])})
        await self._send_activity(await database_sync_to_async(self._activity_since)(self.last_activity_id))
