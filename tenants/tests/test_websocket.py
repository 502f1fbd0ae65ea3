"""The Channels middleware resolves user and tenant like the HTTP middleware; consumers get live updates
through the real Redis channel layer."""
import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from accounts.models import Membership
from config.asgi import application
from tenants import notify
from tenants.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(client, user):
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def communicator(cookie=None, query=""):
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    path = "/ws/tenant/status/" + (f"?{query}" if query else "")
    return WebsocketCommunicator(application, path, headers=headers)


async def test_member_gets_own_tenant_status_and_live_updates(client, named):
    cookie = await _sync(session_cookie)(client, named.alice)
    ws = communicator(cookie)
    connected, _ = await ws.connect()
    assert connected
    first = await ws.receive_json_from(timeout=5)
    assert first == {"type": "tenant.status", "data": {"status": "active", "status_display": "Active",
                                                        "progress": 0, "error": ""}}
    acme = await _sync(Tenant.objects.get)(pk=named.acme.pk)
    acme.status = "suspended"
    await _sync(notify.tenant_status)(acme)
    update = await ws.receive_json_from(timeout=5)
    assert update["data"]["status"] == "suspended"
    await ws.disconnect()


async def test_another_tenants_updates_never_arrive(client, named):
    cookie = await _sync(session_cookie)(client, named.alice)
    ws = communicator(cookie)
    await ws.connect()
    await ws.receive_json_from(timeout=5)
    await _sync(notify.tenant_status)(named.globex)
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


async def refused_with(ws):
    """Accepted, then closed at once with a code the page reads (core.sockets.refuse)."""
    connected, _ = await ws.connect()
    assert connected
    message = await ws.receive_output(timeout=5)
    return message.get("code") if message["type"] == "websocket.close" else None


async def test_selecting_a_tenant_the_user_does_not_belong_to_is_refused(client, named):
    cookie = await _sync(session_cookie)(client, named.alice)
    ws = communicator(cookie, query="tenant=globex")
    assert await refused_with(ws) == 4404


async def test_selecting_among_own_tenants_works(client, named):
    await _sync(Membership.objects.create)(user=named.alice, tenant=named.globex, role="admin")
    cookie = await _sync(session_cookie)(client, named.alice)
    ws = communicator(cookie, query="tenant=globex")
    connected, _ = await ws.connect()
    assert connected
    await ws.receive_json_from(timeout=5)
    await _sync(notify.tenant_status)(named.globex)
    assert (await ws.receive_json_from(timeout=5))["type"] == "tenant.status"
    await ws.disconnect()


async def test_anonymous_is_refused(named):
    assert await refused_with(communicator()) == 4404


async def test_platform_admin_gets_the_pending_count_live(client, named, plans):
    from accounts.actions import register_business
    from conftest import make_user

    cookie = await _sync(session_cookie)(client, named.admin)
    ws = communicator(cookie)
    connected, _ = await ws.connect()
    assert connected
    owner = await _sync(make_user)("dewi@kopi.test")
    await _sync(register_business)(user=owner, business_name="Kopi", plan=plans["free"])
    message = await ws.receive_json_from(timeout=5)
    assert message == {"type": "platform.pending", "data": {"pending": 1}}
    await ws.disconnect()


def _sync(func):
    from channels.db import database_sync_to_async

    return database_sync_to_async(func)
